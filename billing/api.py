from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import entitlements, selectors, subscriptions
from billing.models import Access, Addon, Plan
from common.errors import ServiceError
from teams import api_fields as fields
from teams import fastio
from teams.access import get_org_for_api
from teams.api_schema import error_responses, list_of
from teams.auth import ApiKeyPrincipal
from teams.inputs import storable
from teams.models import Role


class UpgradeOutput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["plan", "addon", "seats", "contact"])
    key = serializers.CharField()
    name = serializers.CharField()
    amount = serializers.IntegerField(allow_null=True, help_text="In minor units of `currency`.")
    currency = serializers.CharField()
    interval = serializers.CharField()
    quantity = serializers.IntegerField()
    url = serializers.URLField()


class DecisionOutput(serializers.Serializer):
    feature = serializers.CharField()
    name = serializers.CharField()
    allowed = serializers.BooleanField()
    reason = serializers.CharField()
    requested = serializers.IntegerField()
    limit = serializers.IntegerField(allow_null=True)
    used = serializers.IntegerField()
    remaining = serializers.IntegerField(allow_null=True)
    unlimited = serializers.BooleanField()
    overage = serializers.CharField()
    period_end = serializers.DateTimeField(allow_null=True)
    warning = serializers.IntegerField(allow_null=True)
    upgrade = serializers.SerializerMethodField()

    @extend_schema_field(UpgradeOutput(allow_null=True))
    def get_upgrade(self, decision) -> dict | None:
        up = decision.upgrade
        if up is None:
            return None
        return {
            "kind": up.kind,
            "key": up.key,
            "name": up.name,
            "amount": up.amount,
            "currency": up.currency,
            "interval": up.interval,
            "quantity": up.quantity,
            "url": self.context["request"].build_absolute_uri(up.url),
        }


class EntitlementCheckApi(APIView):
    scopes = {"post": "read"}
    # Read with the API key, in its round trip: one in all for an on/off feature.
    prefetch_keys = staticmethod(entitlements.prefetch_keys)

    class Input(fields.Input):
        feature = fields.SlugField(max_length=64)
        requested = fields.IntegerField(min_value=0, max_value=10**9, default=1)

    @extend_schema(request=Input, responses={200: DecisionOutput})
    def post(self, request):
        organization = get_org_for_api(request)
        decision = entitlements.check(organization, **_parse_check(request.data))
        if decision.reason == entitlements.Reason.UNKNOWN_FEATURE:
            return Response(
                {
                    "code": "unknown_feature",
                    "message": "No such feature in the catalog.",
                    "fields": {"feature": ["No such feature in the catalog."]},
                },
                status=400,
            )
        return Response(_render_decision(decision, {"request": request}))


# Compiled once: the hot path builds no serializer (teams/fastio.py).
_parse_check = fastio.parser(EntitlementCheckApi.Input)
_render_decision = fastio.renderer(DecisionOutput)


class EntitlementListApi(APIView):
    scopes = {"get": "read"}

    @extend_schema(responses=list_of(DecisionOutput, "DecisionList"))
    def get(self, request):
        organization = get_org_for_api(request)
        decisions = entitlements.entitlements_for(organization)
        data = DecisionOutput(decisions, many=True, context={"request": request}).data
        return Response({"data": data, "next_cursor": None})


class QuotaOutput(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True)
    used = serializers.IntegerField()
    remaining = serializers.IntegerField(allow_null=True)
    unlimited = serializers.BooleanField()
    period_end = serializers.DateTimeField(allow_null=True)


class BillingStatusApi(APIView):
    scopes = {"get": "read"}

    class Output(serializers.Serializer):
        plan = serializers.CharField(allow_null=True, help_text="The plan's key; null without a plan.")
        status = serializers.CharField()
        access = serializers.CharField()
        period_end = serializers.DateTimeField(allow_null=True)
        cancel_at_period_end = serializers.BooleanField()
        quotas = serializers.DictField(child=QuotaOutput(), help_text="Each metered feature's quota, by key.")

    @extend_schema(responses={200: Output})
    def get(self, request):
        organization = get_org_for_api(request)
        subscription = selectors.subscription_of(organization)
        applies = bool(subscription and subscription.applies)
        plan = subscription.plan if applies else selectors.free_plan()
        quotas = {
            d.feature: {
                "limit": d.limit,
                "used": d.used,
                "remaining": d.remaining,
                "unlimited": d.unlimited,
                "period_end": d.period_end,
            }
            for d in entitlements.entitlements_for(organization)
            if d.period_end
        }
        return Response(
            self.Output(
                {
                    "plan": plan.key if plan else None,
                    "status": subscription.status if subscription else "free",
                    "access": subscription.access if subscription else Access.FREE,
                    "period_end": subscription.current_period_end if applies else None,
                    "cancel_at_period_end": bool(applies and subscription.cancel_at_period_end),
                    "quotas": quotas,
                }
            ).data
        )


def _url_output(name: str):
    return inline_serializer(name, {"url": serializers.URLField(help_text="Send the person here.")})


class BillingCheckoutApi(APIView):
    scopes = {"post": "billing:manage"}

    class Input(fields.Input):
        plan = fields.SlugField()
        addons = serializers.DictField(
            child=fields.IntegerField(min_value=1), required=False, validators=[storable]
        )

    @extend_schema(request=Input, responses={201: _url_output("CheckoutUrl"), **error_responses(502, 503)})
    def post(self, request):
        organization = _billing_org(request)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        plan = Plan.objects.public().filter(key=data.validated_data["plan"]).first()
        if plan is None:
            raise ServiceError("unknown_plan", "No such plan.", field="plan")
        addons = {}
        for key, quantity in data.validated_data.get("addons", {}).items():
            addon = Addon.objects.filter(key=key, is_active=True).first()
            if addon is None:
                raise ServiceError("unknown_addon", f'No add-on "{key}".', field="addons")
            addons[addon] = quantity
        actor = request.user if not isinstance(request.user, ApiKeyPrincipal) else None
        url = subscriptions.checkout_start(organization=organization, plan=plan, actor=actor, addons=addons)
        return Response({"url": url}, status=201)


class BillingPortalApi(APIView):
    scopes = {"post": "billing:manage"}

    class Input(fields.Input):
        return_url = fields.URLField(required=False)

    @extend_schema(request=Input, responses={201: _url_output("PortalUrl"), **error_responses(502, 503)})
    def post(self, request):
        organization = _billing_org(request)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        # Only this site's own origin: the service refuses any other with `invalid_return_url`.
        return_url = data.validated_data.get("return_url")
        return Response(
            {"url": subscriptions.portal_url(organization=organization, return_url=return_url)}, status=201
        )


def _billing_org(request):
    """Billing changes need the billing role (or an API key, which admins create)."""
    return get_org_for_api(request, min_role=Role.BILLING)
