"""The usage API: batches of events in, the current period's usage and invoice preview out."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import usage
from teams.access import get_org_for_api


class EventResultOutput(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"])
    code = serializers.CharField(required=False)
    field = serializers.CharField(required=False)
    message = serializers.CharField(required=False)


class UsageEventsApi(APIView):
    """POST a batch of up to 1,000 usage events. Safe to retry: an id already stored is
    reported as a duplicate. Invalid events are rejected one by one; the others land."""

    scopes = {"post": "usage:write"}

    class Input(serializers.Serializer):
        # Each event is validated by the service, so one bad event never fails the batch.
        events = serializers.ListField(child=serializers.JSONField(), max_length=usage.MAX_BATCH)

    class Output(serializers.Serializer):
        accepted = serializers.IntegerField()
        duplicates = serializers.IntegerField()
        rejected = serializers.IntegerField()
        results = EventResultOutput(many=True)

    @extend_schema(request=Input, responses=Output)
    def post(self, request):
        organization = get_org_for_api(request)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        result = usage.usage_ingest(organization=organization, events=data.validated_data["events"])
        results = [{k: v for k, v in vars(r).items() if v or k in ("id", "status")} for r in result.results]
        body = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
            "results": results,
        }
        return Response(body)


class UsageSummaryApi(APIView):
    """The current period: each meter's total against its quota, and the metered invoice lines."""

    scopes = {"get": "read"}

    @extend_schema(responses={200: dict})
    def get(self, request):
        organization = get_org_for_api(request)
        period, totals = usage.meter_totals(organization=organization)
        preview = usage.invoice_preview(organization=organization)
        return Response(
            {
                "period_start": period.start,
                "period_end": period.end,
                "meters": [
                    {
                        "meter": t.meter.key,
                        "aggregation": t.meter.aggregation,
                        "feature": t.meter.feature.key if t.meter.feature else None,
                        "total": t.total,
                        "limit": t.decision.limit if t.decision else None,
                        "unlimited": t.decision.unlimited if t.decision else False,
                    }
                    for t in totals
                ],
                "invoice_preview": {
                    "currency": preview.currency,
                    "total": preview.total,
                    "lines": [
                        {
                            "feature": line.feature.key,
                            "quantity": line.quantity,
                            "included": line.included,
                            "overage": line.overage,
                            "unit_amount": line.unit_amount,
                            "tiers": [
                                {
                                    "first": t.first,
                                    "last": t.last,
                                    "quantity": t.quantity,
                                    "unit_amount": t.unit_amount,
                                    "flat_amount": t.flat_amount,
                                    "amount": t.amount,
                                }
                                for t in line.breakdown.lines
                            ],
                            "amount": line.amount,
                        }
                        for line in preview.lines
                    ],
                },
            }
        )
