"""The usage API: batches of events in, the current period's usage and invoice preview out."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import entitlements, metering
from teams import api_fields as fields
from teams import fastio
from teams.access import get_org_for_api


class EventResultOutput(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"])
    code = serializers.CharField(required=False)
    field = serializers.CharField(required=False)
    message = serializers.CharField(required=False)


class MeterTotalOutput(serializers.Serializer):
    meter = serializers.CharField()
    aggregation = serializers.CharField()
    feature = serializers.CharField(allow_null=True)
    total = serializers.IntegerField()
    limit = serializers.IntegerField(allow_null=True)
    unlimited = serializers.BooleanField()


class TierLineOutput(serializers.Serializer):
    first = serializers.IntegerField()
    last = serializers.IntegerField()
    quantity = serializers.IntegerField()
    unit_amount = serializers.IntegerField()
    flat_amount = serializers.IntegerField()
    amount = serializers.IntegerField()


class PreviewLineOutput(serializers.Serializer):
    feature = serializers.CharField()
    quantity = serializers.IntegerField()
    included = serializers.IntegerField(allow_null=True, help_text="Null when unlimited.")
    overage = serializers.IntegerField()
    unit_amount = serializers.IntegerField(allow_null=True, help_text="Null for a tiered price.")
    tiers = TierLineOutput(many=True)
    amount = serializers.IntegerField()


class InvoicePreviewOutput(serializers.Serializer):
    currency = serializers.CharField()
    total = serializers.IntegerField()
    lines = PreviewLineOutput(many=True)


class UsageEventsApi(APIView):
    """POST a batch of up to 1,000 usage events. Safe to retry: an id already stored is
    reported as a duplicate. Invalid events are rejected one by one; the others land."""

    scopes = {"post": "usage:write"}
    # The plan's entitlements, read with the API key in its round trip.
    prefetch_keys = staticmethod(entitlements.prefetch_keys)

    class Input(fields.Input):
        # Each event is validated by the service, so one bad event never fails the batch.
        # A null event is one bad event like any other: the service rejects it alone.
        events = serializers.ListField(
            child=serializers.JSONField(allow_null=True),
            max_length=metering.MAX_BATCH,
            help_text="Each event an object: `id` (unique per organization, at most 255 characters), "
            "`meter` (a meter's key), `value` (whole number, default 1), `timestamp` (ISO 8601 or "
            "Unix seconds, default now) and `properties` (an object). Anything else in the list is "
            "rejected on its own in `results`.",
        )

    class Output(serializers.Serializer):
        accepted = serializers.IntegerField()
        duplicates = serializers.IntegerField()
        rejected = serializers.IntegerField()
        results = EventResultOutput(many=True)

    @extend_schema(request=Input, responses={200: Output})
    def post(self, request):
        organization = get_org_for_api(request)
        result = metering.usage_ingest(
            organization=organization, events=_parse_events(request.data)["events"]
        )
        results = [{k: v for k, v in vars(r).items() if v or k in ("id", "status")} for r in result.results]
        body = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
            "results": results,
        }
        return Response(body)


# Compiled once: the hot path builds no serializer (teams/fastio.py).
_parse_events = fastio.parser(UsageEventsApi.Input)


class UsageSummaryApi(APIView):
    """The current period: each meter's total against its quota, and the metered invoice lines."""

    scopes = {"get": "read"}

    class Output(serializers.Serializer):
        period_start = serializers.DateTimeField()
        period_end = serializers.DateTimeField()
        meters = MeterTotalOutput(many=True)
        invoice_preview = InvoicePreviewOutput()

    @extend_schema(responses={200: Output})
    def get(self, request):
        organization = get_org_for_api(request)
        period, totals = metering.meter_totals(organization=organization)
        preview = metering.invoice_preview(organization=organization)
        return Response(
            self.Output(
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
            ).data
        )
