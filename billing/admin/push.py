"""What every admin of an object Stripe holds a copy of shares: the push after each save, its
Stripe state, and the catalog's save-time checks."""

from django.contrib import admin, messages
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils.html import format_html

from billing import entitlements
from billing.catalog.export import catalog_problems
from billing.catalog.push import catalog_object_touch
from billing.catalog.tasks import catalog_object_push_task
from billing.models import CatalogStripeState


class _Refused(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems


class StripePushAdmin(admin.ModelAdmin):
    """An object Stripe holds a copy of (`stripe_kind`): pushed after each save's commit, its
    Stripe state in the list (in sync, pending, failed with Stripe's error), and a "Push to
    Stripe" action that retries."""

    stripe_kind: str | None = None
    actions = ["push_to_stripe"]

    def get_list_display(self, request):
        shown = list(super().get_list_display(request))
        return [*shown, "stripe_state"] if self.stripe_kind else shown

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.stripe_kind:
            actions.pop("push_to_stripe", None)
        return actions

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if not self.stripe_kind:
            return queryset
        states = CatalogStripeState.objects.filter(kind=self.stripe_kind, object_id=OuterRef("pk"))
        return queryset.annotate(
            _stripe_status=Subquery(states.values("status")[:1]),
            _stripe_error=Subquery(states.values("error")[:1]),
        )

    @admin.display(description="Stripe")
    def stripe_state(self, obj):
        status = getattr(obj, "_stripe_status", None)
        if status is None:
            return "-"
        label = CatalogStripeState.Status(status).label
        if status == CatalogStripeState.Status.FAILED:
            return format_html(
                '<span class="stripe-failed" title="{0}">{1}: {0}</span>', obj._stripe_error, label
            )
        return format_html('<span class="stripe-{}">{}</span>', status, label)

    def has_push_permission(self, request):
        return self.has_change_permission(request)

    @admin.action(description="Push to Stripe", permissions=["push"])
    def push_to_stripe(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        with transaction.atomic():
            for pk in ids:
                catalog_object_touch(kind=self.stripe_kind, object_id=pk)
                catalog_object_push_task.delay_on_commit(self.stripe_kind, pk)
        states = CatalogStripeState.objects.filter(kind=self.stripe_kind, object_id__in=ids)
        failed = [s for s in states if s.status == CatalogStripeState.Status.FAILED]
        pending = [s for s in states if s.status == CatalogStripeState.Status.PENDING]
        if failed:
            self.message_user(
                request,
                f"{len(failed)} of {len(ids)} failed to reach Stripe: {failed[0].error}",
                messages.ERROR,
            )
        elif pending:
            self.message_user(request, f"{len(ids)} queued for Stripe; the Stripe column shows the outcome.")
        else:
            self.message_user(request, f"{len(ids)} pushed to Stripe.")

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if self.stripe_kind:
            catalog_object_touch(kind=self.stripe_kind, object_id=form.instance.pk)
            catalog_object_push_task.delay_on_commit(self.stripe_kind, form.instance.pk)


class CatalogAdmin(StripePushAdmin):
    """Catalog edits apply the same validation as the catalog file (each model's `clean`, then
    the file's rules over the whole catalog as saved), make every organization's cached
    entitlements stale, and are pushed to Stripe after the commit.

    An edit the file's rules refuse is rolled back and the form shown again with the problems,
    each naming the field; nothing of it is saved or pushed."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method != "POST":
            return super().changeform_view(request, object_id, form_url, extra_context)
        before = set(catalog_problems())
        try:
            with transaction.atomic():
                response = super().changeform_view(request, object_id, form_url, extra_context)
                if response.status_code == 302:  # saved: now the whole catalog, by the file's rules
                    problems = [p for p in catalog_problems() if p not in before]
                    if problems:
                        raise _Refused(problems)
        except _Refused as refused:
            problems = refused.problems
        except IntegrityError as error:
            problems = [f"the database refused the change: {str(error).splitlines()[0]}"]
        else:
            return response
        for _ in messages.get_messages(request):
            pass  # the rolled-back attempt's "changed successfully" is not true
        request._catalog_problems = problems
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        problems = getattr(request, "_catalog_problems", None)
        if not problems:
            return form

        class Refused(form):
            def clean(self):
                data = super().clean()
                for problem in problems:
                    field = next(
                        (f for f in self.fields if f" {f}:" in problem or problem.startswith(f"{f}:")), None
                    )
                    self.add_error(field, problem)
                return data

        return Refused

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        transaction.on_commit(entitlements.invalidate_catalog)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        transaction.on_commit(entitlements.invalidate_catalog)
