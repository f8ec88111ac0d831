"""Sending a person to Stripe Checkout from an HTML form, with one way of saying it failed."""

from collections.abc import Callable

import stripe
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django_htmx.http import HttpResponseClientRedirect

from common.errors import ServiceError


def checkout_redirect(request: HttpRequest, start: Callable[[], str], *, back: str) -> HttpResponse:
    """Call `start` (a service that returns the Checkout URL) and send the browser there; a
    refusal or a Stripe failure comes back to the `back` URL as a message, nothing changed."""
    try:
        url = start()
    except ServiceError as error:
        messages.error(request, error.message)
        return redirect(back)
    except stripe.StripeError:
        messages.error(request, "Stripe could not start the checkout; please try again.")
        return redirect(back)
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)
