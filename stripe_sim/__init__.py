"""An offline, stateful simulator of the parts of Stripe's REST API that Tally uses.

It is a test and demo component: production never imports or starts it, it imports nothing from
Tally's apps, and the apps reach it only over HTTP, exactly as they reach Stripe.
"""

# The API version the stripe 15.x SDK pins; the simulator speaks this one only.
API_VERSION_STRING = "2026-08-26.dahlia"
