from datetime import UTC, datetime, time, timedelta

from django import forms

from billing.models import Meter
from common.forms import DateRangeForm


class UsageFilterForm(DateRangeForm):
    meter = forms.ChoiceField(required=False)
    event_id = forms.CharField(required=False, max_length=255, label="Event id")
    field_order = ["meter", "since", "until", "event_id"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        meters = Meter.objects.filter(is_active=True).values_list("key", "name")
        self.fields["meter"].choices = [("", "All meters"), *meters]

    def filters(self) -> dict:
        """Keyword arguments for `usage.events_of` (empty when the input is invalid)."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {
            "meter": data["meter"],
            "since": datetime.combine(data["since"], time.min, UTC) if data["since"] else None,
            # Inclusive of the whole last day.
            "until": datetime.combine(data["until"] + timedelta(days=1), time.min, UTC)
            if data["until"]
            else None,
            "event_id": data["event_id"].strip(),
        }
