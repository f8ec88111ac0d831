from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import entitlements
from teams.access import get_org_for_api


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
    class Input(serializers.Serializer):
        feature = serializers.SlugField(max_length=64)
        requested = serializers.IntegerField(min_value=0, max_value=10**9, default=1)

    @extend_schema(request=Input, responses=DecisionOutput)
    def post(self, request):
        organization = get_org_for_api(request)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        decision = entitlements.check(organization, **data.validated_data)
        if decision.reason == entitlements.Reason.UNKNOWN_FEATURE:
            return Response(
                {
                    "code": "unknown_feature",
                    "message": "No such feature in the catalog.",
                    "fields": {"feature": ["No such feature in the catalog."]},
                },
                status=400,
            )
        return Response(DecisionOutput(decision, context={"request": request}).data)


class EntitlementListApi(APIView):
    @extend_schema(responses=DecisionOutput(many=True))
    def get(self, request):
        organization = get_org_for_api(request)
        decisions = entitlements.entitlements_for(organization)
        return Response({"data": DecisionOutput(decisions, many=True, context={"request": request}).data})
