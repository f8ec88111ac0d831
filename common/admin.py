from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records that are evidence (ledgers, usage, payments) or change only through services:
    visible to staff, never added, edited or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TabularInline(admin.TabularInline):
    """Django's tabular inline names each column only in its header, so a screen reader hears
    an unnamed field: each control is labelled by its column, and so is the row's delete box."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None:
            label = str(field.label or db_field.verbose_name).capitalize()
            field.widget.attrs.setdefault("aria-label", label)
            # A related-object widget wraps the real <select>; label that one too.
            inner = getattr(field.widget, "widget", None)
            if inner is not None:
                inner.attrs.setdefault("aria-label", label)
        return field

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)

        class Labelled(formset):
            def add_fields(self, form, index):
                super().add_fields(form, index)
                if "DELETE" in form.fields:
                    form.fields["DELETE"].widget.attrs.setdefault("aria-label", "Delete this row")

        return Labelled
