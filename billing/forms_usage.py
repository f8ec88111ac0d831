from datetime import UTC, datetime, time, timedelta

from django import forms

from billing.models import Meter


class UsageFilterForm(forms.Form):
    meter = forms.ChoiceField(required=False)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    event_id = forms.CharField(required=False, max_length=255, label="Event id")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        meters = Meter.objects.filter(is_active=True).values_list("key", "name")
        self.fields["meter"].choices = [("", "All meters"), *meters]

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end date is before the start date.")
        return data

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
