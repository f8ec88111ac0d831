import json

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.entitlements import ratelimit
from common.errors import ServiceError
from credits import selectors, services
from credits.models import CreditReservation, TransactionType
from teams import api_fields as fields
from teams import fastio
from teams.access import client_ip, get_org_for_api
from teams.api_schema import IDEMPOTENT_REPLAYED, error_responses, idempotency_key, list_of
from teams.inputs import idempotency_key_header, storable
from teams.models import Role, User

MAX_METADATA_BYTES = 4096


def _user(request) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _metadata(value: dict) -> dict:
    storable(value)
    if len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise serializers.ValidationError(f"Keep metadata under {MAX_METADATA_BYTES} bytes of JSON.")
    return value


class _Priced(fields.Input):
    """An amount, or an action with a quantity (or, for token-priced actions, a token count)."""

    amount = fields.IntegerField(min_value=1, max_value=services.MAX_AMOUNT, required=False)
    action = fields.SlugField(max_length=60, required=False)
    quantity = fields.IntegerField(min_value=1, max_value=services.MAX_AMOUNT, required=False)
    tokens = fields.IntegerField(min_value=1, max_value=services.MAX_AMOUNT, required=False)
    description = fields.CharField(max_length=200, required=False, allow_blank=True, default="")
    reference_type = fields.CharField(max_length=40, required=False, allow_blank=True, default="")
    reference_id = fields.CharField(max_length=100, required=False, allow_blank=True, default="")
    metadata = serializers.DictField(required=False, default=dict, validators=[_metadata])

    def validate(self, data):
        if "quantity" in data and "tokens" in data:
            raise serializers.ValidationError({"tokens": "Give a quantity or a token count, not both."})
        if ("quantity" in data or "tokens" in data) and "action" not in data:
            raise serializers.ValidationError({"action": "A quantity prices an action; name the action."})
        data["quantity"] = data.pop("tokens", None) or data.get("quantity") or 1
        return data


def _idempotency_key(request) -> str:
    return idempotency_key_header(request, required=True)


class TransactionOutput(serializers.Serializer):
    id = serializers.UUIDField(source="code")
    type = serializers.CharField()
    amount = serializers.IntegerField()
    balance_after = serializers.IntegerField()
    action = serializers.CharField()
    quantity = serializers.IntegerField(allow_null=True)
    price_version = serializers.IntegerField(source="price.version", allow_null=True)
    description = serializers.CharField()
    reference_type = serializers.CharField()
    reference_id = serializers.CharField()
    idempotency_key = serializers.CharField()
    metadata = serializers.DictField()
    created_at = serializers.DateTimeField()


class ReservationOutput(serializers.Serializer):
    id = serializers.UUIDField(source="code")
    status = serializers.CharField()
    amount = serializers.IntegerField()
    consumed = serializers.IntegerField(allow_null=True)
    action = serializers.CharField()
    quantity = serializers.IntegerField(allow_null=True)
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    settled_at = serializers.DateTimeField(allow_null=True)
    transaction = TransactionOutput(allow_null=True)


def _replayable_responses(output, *errors: int) -> dict:
    return {
        201: output,
        200: OpenApiResponse(output, description="A replay: the result of the first request with this key."),
        **error_responses(*errors),
    }


def _replayable(data, obj, *, created: int = status.HTTP_201_CREATED) -> Response:
    response = Response(data, status=status.HTTP_200_OK if obj.replayed else created)
    if obj.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class BalanceApi(APIView):
    scopes = {"get": "read"}

    class Output(serializers.Serializer):
        balance = serializers.IntegerField()
        held = serializers.IntegerField()
        frozen = serializers.IntegerField(
            help_text="Held back: owed to a refund, or bought with a disputed payment."
        )
        available = serializers.IntegerField()
        overdraft_allowance = serializers.IntegerField()
        low_balance_threshold = serializers.IntegerField()
        low_balance_percent = serializers.IntegerField(
            help_text="When not 0, the threshold is this percentage of the last purchase or allowance."
        )
        is_low = serializers.BooleanField()
        runway_days = serializers.IntegerField(allow_null=True)
        lifetime_purchased = serializers.IntegerField()
        lifetime_used = serializers.IntegerField()

    @extend_schema(responses=Output)
    def get(self, request):
        account = services.credit_account_for(organization=get_org_for_api(request))
        account.runway_days = selectors.runway_days(account)
        return Response(self.Output(account).data)


class ConsumeApi(APIView):
    scopes = {"post": "credits:write"}
    # The plan for the rate limit, when this process must read it again, with the API key.
    prefetch_keys = staticmethod(ratelimit.prefetch_keys)

    class Input(_Priced):
        pass

    @extend_schema(
        request=Input,
        responses=_replayable_responses(TransactionOutput, 402, 409),
        parameters=[idempotency_key(required=True), IDEMPOTENT_REPLAYED],
    )
    def post(self, request):
        organization = get_org_for_api(request)
        key = _idempotency_key(request)
        data = _parse_consume(request.data)
        entry = services.credits_consume(
            organization=organization, idempotency_key=key, actor=_user(request), **data
        )
        return _replayable(_render_transaction(entry), entry)


# Compiled once: the hot path builds no serializer (teams/fastio.py).
_parse_consume = fastio.parser(ConsumeApi.Input)
_render_transaction = fastio.renderer(TransactionOutput)


class ReservationListApi(APIView):
    scopes = {"post": "credits:write"}

    class Input(_Priced):
        ttl_seconds = fields.IntegerField(min_value=1, max_value=24 * 3600, required=False)

    @extend_schema(
        request=Input,
        responses=_replayable_responses(ReservationOutput, 402, 409),
        parameters=[idempotency_key(required=True), IDEMPOTENT_REPLAYED],
    )
    def post(self, request):
        organization = get_org_for_api(request)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        reservation = services.credit_reservation_create(
            organization=organization,
            idempotency_key=_idempotency_key(request),
            actor=_user(request),
            **data.validated_data,
        )
        return _replayable(ReservationOutput(reservation).data, reservation)


def _reservation(request, code) -> CreditReservation:
    organization = get_org_for_api(request)
    return get_object_or_404(
        CreditReservation.objects.select_related("price"), organization_id=organization.pk, code=code
    )


class ReservationConfirmApi(APIView):
    scopes = {"post": "credits:write"}

    class Input(fields.Input):
        amount = fields.IntegerField(min_value=0, max_value=services.MAX_AMOUNT, required=False)

    @extend_schema(request=Input, responses={200: ReservationOutput, **error_responses(402, 409)})
    def post(self, request, code):
        reservation = _reservation(request, code)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        reservation = services.credit_reservation_confirm(reservation=reservation, **data.validated_data)
        return Response(ReservationOutput(reservation).data)


class ReservationCancelApi(APIView):
    scopes = {"post": "credits:write"}

    @extend_schema(request=None, responses={200: ReservationOutput, **error_responses(409)})
    def post(self, request, code):
        reservation = services.credit_reservation_cancel(reservation=_reservation(request, code))
        return Response(ReservationOutput(reservation).data)


class TransactionListApi(APIView):
    scopes = {"get": "read"}

    class Filters(serializers.Serializer):
        type = serializers.ChoiceField(choices=TransactionType.choices, required=False, default="")
        since = serializers.DateField(required=False, default=None)
        until = serializers.DateField(required=False, default=None)
        reference_type = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
        reference_id = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        cursor = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        limit = serializers.IntegerField(min_value=1, max_value=200, required=False, default=50)

    @extend_schema(parameters=[Filters], responses=list_of(TransactionOutput, "TransactionList"))
    def get(self, request):
        account = services.credit_account_for(organization=get_org_for_api(request))
        # A plain dict: DRF reads an empty value in a QueryDict as "not given", which would
        # let `?until=` through although it is not a date.
        filters = self.Filters(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        cursor, limit = filters.validated_data.pop("cursor"), filters.validated_data.pop("limit")
        rows = selectors.transactions_of(account, **filters.validated_data)
        page, next_cursor = selectors.page_after(rows, cursor=cursor, limit=limit)
        return Response({"data": TransactionOutput(page, many=True).data, "next_cursor": next_cursor or None})


class PackageListApi(APIView):
    scopes = {"get": "read"}

    class Output(serializers.Serializer):
        id = serializers.CharField(source="code")
        name = serializers.CharField()
        description = serializers.CharField()
        credits = serializers.IntegerField()
        bonus_credits = serializers.IntegerField()
        total_credits = serializers.IntegerField()
        unit_amount = serializers.IntegerField()
        currency = serializers.CharField()

    @extend_schema(responses=list_of(Output, "PackageList"))
    def get(self, request):
        get_org_for_api(request)
        return Response(
            {"data": self.Output(selectors.active_packages(), many=True).data, "next_cursor": None}
        )


class PurchaseApi(APIView):
    """Buy a package: returns the Stripe Checkout URL. The credits are granted when Stripe
    reports the session paid, once, however often it reports it."""

    scopes = {"post": "billing:manage"}

    class Input(fields.Input):
        package = fields.SlugField(max_length=40)

    class Output(serializers.Serializer):
        id = serializers.UUIDField(source="code")
        package = serializers.CharField(source="package.code")
        credits = serializers.IntegerField()
        bonus_credits = serializers.IntegerField()
        amount = serializers.IntegerField()
        currency = serializers.CharField()
        status = serializers.CharField()
        url = serializers.URLField()

    @extend_schema(request=Input, responses={201: Output, **error_responses(502, 503)})
    def post(self, request):
        organization = get_org_for_api(request, min_role=Role.BILLING)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        package = services.credit_package_get(code=data.validated_data["package"])
        purchase, url = services.credit_purchase_start(
            organization=organization, package=package, actor=_user(request)
        )
        purchase.url = url
        return Response(self.Output(purchase).data, status=status.HTTP_201_CREATED)


class EstimateApi(APIView):
    scopes = {"post": "read"}

    class Input(fields.Input):
        action = fields.SlugField(max_length=60)
        quantity = fields.IntegerField(min_value=1, max_value=services.MAX_AMOUNT, required=False)
        tokens = fields.IntegerField(min_value=1, max_value=services.MAX_AMOUNT, required=False)

    class Output(serializers.Serializer):
        action = serializers.CharField()
        quantity = serializers.IntegerField()
        credits = serializers.IntegerField()
        price_version = serializers.IntegerField(source="price.version")
        unit = serializers.CharField(source="price.unit")
        unit_size = serializers.IntegerField(source="price.unit_size")

    @extend_schema(request=Input, responses=Output)
    def post(self, request):
        get_org_for_api(request)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        if "quantity" in data.validated_data and "tokens" in data.validated_data:
            raise ServiceError(
                "quantity_or_tokens", "Give a quantity or a token count, not both.", field="tokens"
            )
        quantity = data.validated_data.get("tokens") or data.validated_data.get("quantity") or 1
        quote = services.credits_estimate(action=data.validated_data["action"], quantity=quantity)
        return Response(self.Output(quote).data)


class AdjustmentApi(APIView):
    """Staff only: a signed correction with a reason, written to the ledger and the audit log."""

    scopes = {"post": "credits:write"}

    class Input(fields.Input):
        amount = fields.IntegerField(min_value=-services.MAX_AMOUNT, max_value=services.MAX_AMOUNT)
        reason = fields.CharField(max_length=200)

    @extend_schema(
        request=Input,
        responses=_replayable_responses(TransactionOutput, 409),
        parameters=[idempotency_key(required=False), IDEMPOTENT_REPLAYED],
    )
    def post(self, request):
        organization = get_org_for_api(request)
        user = _user(request)
        if user is None or not user.is_staff:
            raise ServiceError("staff_only", "Only staff adjust balances.", status=403)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        entry = services.credits_adjust(
            organization=organization,
            actor=user,
            idempotency_key=idempotency_key_header(request, required=False) or "",
            ip_address=client_ip(request),
            **data.validated_data,
        )
        return _replayable(TransactionOutput(entry).data, entry)
