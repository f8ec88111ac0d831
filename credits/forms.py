from django import forms

from common import formatting
from common.forms import DateRangeForm
from credits.models import CreditPackage, TransactionType


class HistoryFilterForm(DateRangeForm):
    type = forms.ChoiceField(choices=[("", "All types"), *TransactionType.choices], required=False)
    reference = forms.CharField(required=False, max_length=100, label="Reference id")
    field_order = ["type", "since", "until", "reference"]

    def filters(self) -> dict:
        """Keyword arguments for `selectors.transactions_of` (empty when the input is invalid)."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {
            "type": data["type"],
            "since": data["since"],
            "until": data["until"],
            "reference_id": data["reference"].strip(),
        }


class CreditSettingsForm(forms.Form):
    low_balance_threshold = forms.IntegerField(
        min_value=0,
        max_value=10**12,
        label="Low-balance alert at",
        help_text=(
            "Email and banner when the balance falls to this: a number of credits, or a percentage "
            "of the last purchase or allowance (10 for 10% left). 0 turns it off."
        ),
    )
    low_balance_unit = forms.ChoiceField(
        choices=[("credits", "credits"), ("percent", "% of the last purchase or allowance")],
        initial="credits",
        required=False,
        label="Counted in",
    )
    auto_recharge_enabled = forms.BooleanField(required=False, label="Recharge automatically")
    auto_recharge_threshold = forms.IntegerField(
        min_value=0, max_value=10**12, required=False, initial=0, label="Recharge below (credits)"
    )
    auto_recharge_package = forms.ModelChoiceField(
        queryset=CreditPackage.objects.filter(is_active=True), required=False, label="Package to buy"
    )
    auto_recharge_monthly_limit = forms.DecimalField(
        min_value=0,
        max_value=10**8,
        max_digits=12,
        decimal_places=3,
        required=False,
        initial=0,
        label="Monthly limit (in the package's currency)",
        help_text="Auto-recharge never charges more than this in a calendar month.",
    )

    def clean_auto_recharge_threshold(self):
        return self.cleaned_data["auto_recharge_threshold"] or 0

    def clean(self):
        cleaned = super().clean()
        # "10% remaining": a percentage of the last refill, or a fixed number of credits.
        unit = cleaned.pop("low_balance_unit", "") or "credits"
        threshold = cleaned.get("low_balance_threshold")
        cleaned["low_balance_percent"] = 0
        if unit == "percent" and threshold is not None:
            if threshold > 100:
                self.add_error(
                    "low_balance_threshold", "A percentage is between 1 and 100 (0 turns alerts off)."
                )
            else:
                cleaned["low_balance_percent"], cleaned["low_balance_threshold"] = threshold, 0
        limit = cleaned.get("auto_recharge_monthly_limit")
        if "auto_recharge_monthly_limit" in self.errors:
            return cleaned
        # Typed in the package's units (dollars, yen), stored in its minor units.
        currency = recharge_currency(cleaned.get("auto_recharge_package"))
        try:
            cleaned["auto_recharge_monthly_limit"] = formatting.to_minor(limit or 0, currency)
        except ValueError:
            places = formatting.currency_exponent(currency)
            self.add_error(
                "auto_recharge_monthly_limit",
                f"{currency.upper()} amounts have "
                + (f"at most {places} decimal places." if places else "no decimal places."),
            )
        return cleaned


def recharge_currency(package: CreditPackage | None) -> str:
    """The currency the monthly limit is counted in: the recharge package's."""
    return package.currency if package is not None else "usd"
