"""`@charges_credits`: a view that costs credits holds them first and pays only if it succeeds."""

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps

from django.http import HttpRequest
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from rest_framework.request import Request
from rest_framework.response import Response

from credits import services
from credits.models import CreditReservation
from teams.access import get_org_for_api, get_org_for_user
from teams.models import User

CONFIRM_FIELD = "confirm_credits"
# What the X-Confirm-Credits header may say (the API schema lists the same values).
CONFIRM_HEADER_VALUES = ("true", "false", "1", "0", "yes", "no")


@dataclass
class Charge:
    """What the decorated view is charged; the view may report the units it really used."""

    quote: services.Quote
    reservation: CreditReservation
    quantity: int

    @property
    def cost(self) -> int:
        """What a success confirms: the units the view reported, never more than was held."""
        if self.quantity == 0:
            return 0
        cost = self.quote.price.cost(self.quantity) if self.quote.price else self.quote.credits
        return min(cost, self.reservation.amount)


def credits_used(request, *, quantity: int) -> None:
    """Called by a decorated view once it knows how many units it used (e.g. tokens)."""
    charge = getattr(request, "credit_charge", None)
    if charge is not None:
        charge.quantity = quantity


def credits_charged(request) -> int:
    """What the decorated view's success will be charged (0 when it charges nothing): a view
    reports the balance after it with `balance - credits_charged(request)`."""
    charge = getattr(request, "credit_charge", None)
    return charge.cost if charge is not None else 0


def _request_of(args) -> HttpRequest | Request:
    # A function view gets the request first; a method (APIView.post) gets it after self.
    return args[0] if isinstance(args[0], HttpRequest | Request) else args[1]


def _confirmed(request) -> bool:
    values = [request.headers.get("X-Confirm-Credits", "")]
    body = request.data if isinstance(request, Request) else None
    values.append(str(body.get(CONFIRM_FIELD, "")) if isinstance(body, Mapping) else "")
    values.append(request.POST.get(CONFIRM_FIELD, "") if not isinstance(request, Request) else "")
    return any(v.lower() in ("1", "true", "yes") for v in values)


def _back_url(request, organization) -> str:
    referer = request.META.get("HTTP_REFERER", "")
    if referer and url_has_allowed_host_and_scheme(referer, {request.get_host()}, request.is_secure()):
        return referer
    return reverse("credits", args=[organization.slug])


def _html(request, template: str, context: dict, *, status: int):
    # htmx swaps only successful responses, so its partial answers with 200.
    if request.htmx:
        return render(request, f"credits/charge.html#{template}", context)
    return render(request, "credits/charge.html", {**context, "page": template}, status=status)


def charges_credits(
    action: str | Callable[[HttpRequest], str | None],
    *,
    quantity: int | Callable[[HttpRequest], int] = 1,
):
    """Price the request, hold the credits, run the view, then charge or release.

    `action` and `quantity` are values or functions of the request; an action of None means
    there is nothing to charge (the view will refuse the input itself). Before running, a
    request that would use more than half the available balance asks for confirmation
    (re-sent with `confirm_credits=1` or the `X-Confirm-Credits: true` header). A response with
    a status below 400 confirms the hold, at the units the view reported through
    `credits_used` (never more than was held); an error, an exception or a report of zero
    units (a refusal shown with status 200, as htmx needs) releases it all.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            request = _request_of(args)
            api = isinstance(request, Request)
            header = request.headers.get("X-Confirm-Credits")
            if api and header is not None and header not in CONFIRM_HEADER_VALUES:
                message = f"Send X-Confirm-Credits as one of: {', '.join(CONFIRM_HEADER_VALUES)}."
                body = {
                    "code": "invalid_header",
                    "message": message,
                    "fields": {"X-Confirm-Credits": [message]},
                }
                return Response(body, status=400)
            organization = (
                get_org_for_api(request) if api else get_org_for_user(request, kwargs["org_slug"])[0]
            )
            name = action(request) if callable(action) else action
            if not name:
                return view(*args, **kwargs)
            units = quantity(request) if callable(quantity) else quantity
            quote = services.credits_estimate(action=name, quantity=units)
            account = services.credit_account_for(organization=organization)
            context = {"organization": organization, "quote": quote, "account": account}
            try:
                if quote.credits > account.spendable:
                    raise services.InsufficientCredits(
                        required=quote.credits, balance=account.balance, available=account.available
                    )
                if quote.credits * 2 > account.available and not _confirmed(request):
                    if api:
                        return Response(
                            {
                                "code": "confirmation_required",
                                "message": f"This uses about {quote.credits:,} credits, more than half of "
                                f"your {account.available:,}. Send it again with X-Confirm-Credits: true.",
                                "estimate": quote.credits,
                                "balance": account.balance,
                            },
                            status=409,
                        )
                    fields = [
                        (k, v) for k, vs in request.POST.lists() for v in vs if k != "csrfmiddlewaretoken"
                    ]
                    return _html(
                        request,
                        "confirm",
                        {**context, "fields": fields, "back": _back_url(request, organization)},
                        status=200,
                    )
                user = request.user if isinstance(request.user, User) else None
                reservation = services.credit_reservation_create(
                    organization=organization,
                    idempotency_key=f"view:{uuid.uuid4()}",
                    action=quote.action,
                    quantity=quote.quantity,
                    actor=user,
                    reference_type="request",
                    reference_id=request.path[:100],
                )
            except services.InsufficientCredits as error:
                if api:
                    return Response(error.as_dict(), status=402)
                return _html(request, "refused", {**context, "error": error}, status=402)

            request.credit_charge = charge = Charge(quote=quote, reservation=reservation, quantity=units)
            try:
                response = view(*args, **kwargs)
            except BaseException:
                services.credit_reservation_cancel(reservation=reservation)
                raise
            if response.status_code >= 400 or charge.quantity == 0:
                services.credit_reservation_cancel(reservation=reservation)
                return response
            services.credit_reservation_confirm(
                reservation=reservation, amount=charge.cost, quantity=charge.quantity
            )
            if getattr(request, "htmx", False):
                response["HX-Trigger"] = "credits-changed"
            return response

        return wrapped

    return decorator
