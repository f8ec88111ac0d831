"""The WSGI application: authentication, parameters, idempotency, dispatch and hosted pages."""

import hashlib
import json
import logging
import re
import secrets
import time
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

# Importing the resource modules registers their routes.
from stripe_sim import (  # noqa: F401
    API_VERSION_STRING,
    authentication,
    billing,
    checkout,
    clock,
    core,
    delivery_faults,
    discounts,
    disputes,
    event_api,
    faults,
    meters,
    outage,
    pages,
    pdf,
    strict,
    tax,
)
from stripe_sim.errors import StripeError, unauthorized
from stripe_sim.events import emit_updates
from stripe_sim.params import decode
from stripe_sim.routing import ROUTES, Ctx
from stripe_sim.store import Store
from stripe_sim.webhooks import Dispatcher

log = logging.getLogger("stripe_sim")

_KEY = re.compile(r"^sk_test_[A-Za-z0-9_]+$")
MAX_REQUEST_LOG = 200


class SimApp:
    def __init__(self, store: Store | None = None, state_file: str | None = None) -> None:
        self.store = store or Store()
        self.state_file = state_file
        self.dispatcher = Dispatcher(self.store)
        rules = [
            Rule(path, methods=[method], endpoint=index) for index, (method, path, _) in enumerate(ROUTES)
        ]
        self.url_map = Map(rules, strict_slashes=False)

    # --- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        api = request.path.startswith("/v1/")
        response = self.api(request) if api else self.page(request)
        return response(environ, start_response)

    def reset(self) -> None:
        self.store.reset()

    # --- API ------------------------------------------------------------------------------------

    def api(self, request: Request) -> Response:
        request_id = "req_" + secrets.token_hex(7)
        idem_key = request.headers.get("Idempotency-Key")
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("Stripe-Version") or API_VERSION_STRING,
        }
        if idem_key:
            headers["Idempotency-Key"] = idem_key
        try:
            api_key = self._authenticate(request)
            pairs = list(request.args.items(multi=True))
            if request.method == "POST":
                pairs += list(request.form.items(multi=True))
            params = decode(pairs)
            adapter = self.url_map.bind_to_environ(request.environ)
            try:
                index, url_args = adapter.match(method=request.method)
            except (NotFound, MethodNotAllowed):
                raise StripeError(
                    404,
                    "invalid_request_error",
                    f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                    "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                ) from None
            handler = ROUTES[index][2]
            # Stripe refuses what its API does not take before doing anything, and saves no
            # result under the idempotency key for such a request.
            strict.validate_request(request.method, request.path, params)
        except StripeError as exc:
            return self._json(exc.status, exc.body(request_id), headers)

        mutating = request.method in ("POST", "DELETE")
        fingerprint = hashlib.sha256(
            json.dumps([request.method, request.path, params], sort_keys=True).encode()
        ).hexdigest()
        base_url = request.host_url.rstrip("/")
        with self.store.lock:
            failing = outage.outage_error(self.store.config, request.method, request.path)
            if failing is not None:
                self._log(request, failing.status, request_id)
                return self._json(
                    failing.status, failing.body(request_id), {**headers, **outage.RETRY_HEADER}
                )
            fault = faults.take(self.store.faults, request.method, request.path)
        if fault is not None and fault["latency_ms"]:
            # Slow, not failed: outside the lock, so other requests (a retry) go on meanwhile.
            time.sleep(fault["latency_ms"] / 1000)
        if fault is not None and fault["kind"] == "latency":
            fault = None
        if fault is not None and fault["kind"] == "reset" and not fault["after"]:
            self._log(request, 0, request_id)
            faults.reset_connection(request.environ)
        with self.store.lock:
            self.store.base_url = base_url
            if fault is not None and not fault["after"]:
                # Stripe failed before doing anything: nothing changes, nothing is remembered.
                error = faults.error_of(fault)
                self._log(request, error.status, request_id)
                headers.update(faults.headers_of(fault))
                return self._json(error.status, error.body(request_id), headers)
            if mutating and idem_key:
                record = self.store.idempotency.get((api_key, idem_key))
                if record is not None:
                    if record["fingerprint"] != fingerprint:
                        error = StripeError(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            f"'{idem_key}' if you meant to execute a different request.",
                        )
                        return self._json(400, error.body(request_id), headers)
                    replay = {**headers, "Idempotent-Replayed": "true"}
                    replay["Request-Id"] = record["request_id"]
                    self._log(request, record["status"], request_id, replayed=True)
                    return self._json(record["status"], record["body"], replay)
            self.store.current_request = {
                "id": request_id,
                "idempotency_key": idem_key if mutating else None,
            }
            ctx = Ctx(
                store=self.store,
                params=params,
                base_url=base_url,
                method=request.method,
                path=request.path,
            )
            status = 500
            reset = False
            try:
                body: dict[str, Any] = handler(ctx, **url_args)
                status = 200
                strict.check_response(request.method, request.path, body)
            except StripeError as exc:
                status, body = exc.status, exc.body(request_id)
            except Exception:
                log.exception("stripe_sim: unhandled error in %s %s", request.method, request.path)
                status = 500
                body = StripeError(500, "api_error", "An unexpected error occurred in the simulator.").body(
                    request_id
                )
            finally:
                if status < 500:
                    emit_updates(self.store)
                self.store.current_request = {"id": None, "idempotency_key": None}
            if mutating and idem_key and status < 500:
                self.store.idempotency[(api_key, idem_key)] = {
                    "fingerprint": fingerprint,
                    "status": status,
                    "body": body,
                    "request_id": request_id,
                }
            if fault is not None and fault["kind"] == "reset":
                self._log(request, 0, request_id)
                if mutating and self.state_file:
                    self.store.save_to(self.state_file)
                reset = True
            elif fault is not None:
                # The work was done (and an idempotent retry replays it); only the answer is lost.
                error = faults.error_of(fault)
                status, body = error.status, error.body(request_id)
                headers.update(faults.headers_of(fault))
            if not reset:
                self._log(request, status, request_id)
                if mutating and self.state_file:
                    self.store.save_to(self.state_file)
        # Outside the lock: a webhook receiver may call back into the API while we deliver.
        self.dispatcher.flush()
        if reset:
            faults.reset_connection(request.environ)
        return self._json(status, body, headers)

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        key = ""
        if header.startswith("Bearer "):
            key = header[len("Bearer ") :].strip()
        elif request.authorization is not None and request.authorization.username:
            key = request.authorization.username
        if not key:
            raise unauthorized(
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY')."
            )
        if not _KEY.match(key):
            raise unauthorized(f"Invalid API Key provided: {key[:8]}{'*' * 4}{key[-4:]}")
        return key

    def _log(self, request: Request, status: int, request_id: str, *, replayed: bool = False) -> None:
        self.store.requests.append(
            {
                "at": int(time.time()),
                "id": request_id,
                "method": request.method,
                "path": request.path,
                "status": status,
                # Status 0: the connection was cut without an answer.
                "idempotency_key": request.headers.get("Idempotency-Key"),
                "replayed": replayed,
            }
        )
        del self.store.requests[:-MAX_REQUEST_LOG]

    @staticmethod
    def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
        return Response(
            json.dumps(body, indent=2),
            status=status,
            headers=headers,
            content_type="application/json",
        )

    # --- hosted pages and the debug surface -----------------------------------------------------

    def page(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        parts = path.strip("/").split("/")
        try:
            if parts[0] == "checkout" and len(parts) == 2:
                return self._checkout(request, parts[1])
            if parts[0] == "portal" and len(parts) == 2:
                return self._portal(request, parts[1])
            if parts[0] == "i" and len(parts) == 2:
                return self._invoice(request, parts[1])
            if parts[0] == "i" and len(parts) == 3 and parts[2] == "pdf":
                return self._invoice_pdf(parts[1])
            if parts[0] == "authenticate" and len(parts) == 2:
                return self._authenticate_intent(request, parts[1])
            if parts[0] == "_sim":
                return self._sim(request, parts[1:])
        except HTTPException as exc:
            return exc.get_response()
        return Response("Not found", status=404)

    def _html(self, status: int, html: str) -> Response:
        return Response(html, status=status, content_type="text/html; charset=utf-8")

    def _checkout(self, request: Request, session_id: str) -> Response:
        if request.method == "POST":
            with self.store.lock:
                status, html, target = pages.checkout_submit(self.store, session_id, request.form.to_dict())
                emit_updates(self.store)
                self.persist()
            self.dispatcher.flush()
            if target:
                return Response("", status=303, headers={"Location": target})
            return self._html(status, html)
        with self.store.lock:
            status, html = pages.checkout_page(self.store, session_id)
            emit_updates(self.store)
            self.persist()  # looking at a session past its time expires it
        self.dispatcher.flush()
        return self._html(status, html)

    def _portal(self, request: Request, session_id: str) -> Response:
        with self.store.lock:
            if request.method == "POST":
                status, html = pages.portal_submit(self.store, session_id, request.form.to_dict())
                emit_updates(self.store)
                self.persist()
            else:
                status, html = pages.portal_page(self.store, session_id)
        self.dispatcher.flush()
        return self._html(status, html)

    def _invoice(self, request: Request, invoice_id: str) -> Response:
        with self.store.lock:
            self.store.base_url = request.host_url.rstrip("/")
            if request.method == "POST":
                status, html = pages.invoice_submit(self.store, invoice_id, request.form.to_dict())
                emit_updates(self.store)
                self.persist()
            else:
                status, html = pages.invoice_page(self.store, invoice_id)
        self.dispatcher.flush()
        return self._html(status, html)

    def _invoice_pdf(self, invoice_id: str) -> Response:
        with self.store.lock:
            document = pdf.invoice_pdf(self.store, invoice_id)
        if document is None:
            return Response("Not found", status=404)
        return Response(
            document,
            content_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{invoice_id}.pdf"'},
        )

    def _authenticate_intent(self, request: Request, pi_id: str) -> Response:
        with self.store.lock:
            form = request.form.to_dict() if request.method == "POST" else None
            status, body, target = authentication.intent_page(self.store, pi_id, form)
            if form is not None:
                emit_updates(self.store)
                self.persist()
        self.dispatcher.flush()
        if target:
            return Response("", status=303, headers={"Location": target})
        return self._html(status, pages.page("Authenticate", body))

    def _sim(self, request: Request, parts: list[str]) -> Response:
        store = self.store
        if not parts or parts == [""]:
            with store.lock:
                return self._html(200, pages.debug_page(store))
        head = parts[0]
        if head == "reset" and request.method == "POST":
            store.reset()
            self.persist()
            return Response("", status=303, headers={"Location": "/_sim/"})
        if head == "config":
            if request.method == "POST":
                body = request.get_json(silent=True) or {}
                try:
                    if "webhook_faults" in body:
                        body["webhook_faults"] = delivery_faults.validate(body["webhook_faults"])
                except delivery_faults.DeliveryFaultError as exc:
                    return Response(
                        json.dumps({"error": str(exc)}), status=400, content_type="application/json"
                    )
                with store.lock:
                    for key, value in body.items():
                        if hasattr(store.config, key):
                            setattr(store.config, key, value)
            return Response(json.dumps(vars(store.config)), content_type="application/json")
        if head == "settle" and request.method == "POST":
            return self._settle(request)
        if head == "faults" and len(parts) == 1:
            return self._faults(request)
        if head == "deliveries" and parts[1:] == ["release"] and request.method == "POST":
            with store.lock:
                released = delivery_faults.release(store)
            self.dispatcher.flush()
            return Response(json.dumps(released), content_type="application/json")
        if head == "deliveries" and len(parts) == 1:
            with store.lock:
                data = [_public_delivery(d) for d in store.deliveries]
            return Response(json.dumps(data), content_type="application/json")
        if head == "deliveries" and parts[2:] == ["resend"] and request.method == "POST":
            response = self._resend(parts[1])
            if request.form.get("back") and response.status_code == 200:
                return Response("", status=303, headers={"Location": "/_sim/"})
            return response
        if head == "advance" and request.method == "POST":
            return self._advance(request)
        if head == "objects" and len(parts) == 2:
            with store.lock:
                return self._html(200, pages.objects_page(store, parts[1]))
        if head == "object" and len(parts) == 2:
            with store.lock:
                return self._html(*pages.object_page(store, parts[1]))
        return Response("Not found", status=404)

    def _settle(self, request: Request) -> Response:
        """The bank answers processing debits now, whatever their test IBAN's delay:
        ``{"payment_intent": "pi_..."}`` for one, or all of them."""
        store = self.store
        body = request.get_json(silent=True) or {}
        with store.lock:
            pending = checkout.processing_debits(store)
            wanted = body.get("payment_intent") if isinstance(body, dict) else None
            if wanted:
                pending = [pi for pi in pending if pi["id"] == wanted]
                if not pending:
                    return Response(
                        json.dumps({"error": f"no processing payment intent {wanted}"}),
                        status=404,
                        content_type="application/json",
                    )
            for pi in sorted(pending, key=lambda p: p["_seq"]):
                checkout.debit_settle(store, pi)
            self.persist()
            settled = [{"id": pi["id"], "status": pi["status"]} for pi in pending]
        self.dispatcher.flush()
        if request.form.get("back"):
            return Response("", status=303, headers={"Location": "/_sim/"})
        return Response(json.dumps(settled), content_type="application/json")

    def _faults(self, request: Request) -> Response:
        """Arm faults (POST: one, or ``{"faults": [...]}``), list them (GET), disarm all (DELETE)."""
        store = self.store
        if request.method == "POST":
            body = request.get_json(silent=True)
            raw = body.get("faults") if isinstance(body, dict) and "faults" in body else [body]
            try:
                if not isinstance(raw, list):
                    raise faults.FaultSpecError("faults: a list of faults")
                armed = [faults.parse(item) for item in raw]
            except faults.FaultSpecError as exc:
                return Response(json.dumps({"error": str(exc)}), status=400, content_type="application/json")
            with store.lock:
                store.faults.extend(armed)
        elif request.method == "DELETE":
            with store.lock:
                store.faults.clear()
        with store.lock:
            data = [faults.public(f) for f in store.faults]
        return Response(json.dumps(data), content_type="application/json")

    def _advance(self, request: Request) -> Response:
        """Move time on for objects on no test clock: ``{"seconds": n}`` or ``{"to": timestamp}``
        as JSON, or ``days`` from the debug page's form."""
        store = self.store
        body = request.get_json(silent=True) or {}
        try:
            if request.form.get("days"):
                seconds = float(request.form["days"]) * 86400
            else:
                seconds = float(body.get("seconds", 0))
            with store.lock:
                target = int(body["to"]) if "to" in body else store.now() + int(seconds)
                if target <= store.now():
                    raise ValueError
                clock.advance_wall_time(store, target)
                self.persist()
        except (TypeError, ValueError, OverflowError):
            return Response(
                '{"error": "time only moves forward"}', status=400, content_type="application/json"
            )
        except StripeError as exc:
            return self._json(exc.status, exc.body(""), {})
        self.dispatcher.flush()
        if request.form.get("days"):
            return Response("", status=303, headers={"Location": "/_sim/"})
        with store.lock:
            return Response(json.dumps({"now": store.now()}), content_type="application/json")

    def _resend(self, delivery_id: str) -> Response:
        """Deliver an event again, as the dashboard's "Resend" does: a receiver must cope with
        seeing the same event twice."""
        store = self.store
        with store.lock:
            original = next((d for d in store.deliveries if d["id"] == delivery_id), None)
            if original is None:
                return Response("Not found", status=404)
            resend = {
                **{k: original[k] for k in ("event", "type", "endpoint", "url")},
                "id": store.new_id("whdel"),
                "status": "pending",
                "attempts": [],
                "next_attempt_at": 0.0,
            }
            store.deliveries.append(resend)
            self.persist()
        self.dispatcher.flush()
        with store.lock:
            data = _public_delivery(resend)
        return Response(json.dumps(data), content_type="application/json")

    def persist(self) -> None:
        if self.state_file:
            self.store.save_to(self.state_file)


def _public_delivery(delivery: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in delivery.items() if not k.startswith("_")}


def create_app(state_file: str | None = None) -> SimApp:
    app = SimApp(state_file=state_file)
    if state_file:
        app.store.load_from(state_file)
    return app
