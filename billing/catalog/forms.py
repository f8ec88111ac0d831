"""Price tiers edited as rows in the admin: up to, unit amount and flat amount in minor units.

A row left blank is dropped; a blank "up to" is infinity (only the last row may have one). The
rows are checked with the catalog file's rules, each problem naming its row and field. A price's
other currencies are edited the same way: one block per currency, with a unit amount or rows.
"""

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from billing.pricing import validate_tiers

CELLS = ("up_to", "unit_amount", "flat_amount")
EXTRA_ROWS = 3


class TiersWidget(forms.Widget):
    """A table of rows posted as `<name>-<row>-<cell>`."""

    def format_value(self, value):
        rows = value if isinstance(value, list) else []
        shown = [
            {cell: "" if row.get(cell) is None else str(row.get(cell)) for cell in CELLS}
            for row in rows
            if isinstance(row, dict)
        ]
        return shown + [dict.fromkeys(CELLS, "")] * EXTRA_ROWS

    def render(self, name, value, attrs=None, renderer=None):
        rows = self.format_value(value)
        body = format_html_join(
            "",
            "<tr><th scope='row'>{}</th>{}</tr>",
            (
                (
                    index + 1,
                    format_html_join(
                        "",
                        '<td><input type="text" inputmode="numeric" name="{}-{}-{}" value="{}" '
                        'size="8" aria-label="Row {} {}"></td>',
                        ((name, index, cell, row[cell], index + 1, cell) for cell in CELLS),
                    ),
                )
                for index, row in enumerate(rows)
            ),
        )
        return format_html(
            '<table class="tier-rows"><thead><tr><th>Row</th><th>Up to (blank = infinity, last row '
            "only)</th><th>Unit amount (minor units)</th><th>Flat amount (minor units)</th></tr>"
            '</thead><tbody>{}</tbody></table><input type="hidden" name="{}-rows" value="{}">',
            body,
            name,
            len(rows),
        )

    def value_from_datadict(self, data, files, name):
        # The rows posted, counted by their cells (not trusting the hidden count alone).
        rows, index = [], 0
        while index < 1000 and any(f"{name}-{index}-{cell}" in data for cell in CELLS):
            rows.append({cell: (data.get(f"{name}-{index}-{cell}") or "").strip() for cell in CELLS})
            index += 1
        return rows

    def value_omitted_from_data(self, data, files, name):
        return f"{name}-rows" not in data and f"{name}-0-up_to" not in data


class TiersField(forms.Field):
    widget = TiersWidget

    def to_python(self, value):
        if not isinstance(value, list):
            return []
        if all(isinstance(row.get(cell), int | type(None)) for row in value for cell in CELLS):
            return value  # already tiers (the initial value)
        tiers, problems = [], []
        for index, row in enumerate(value):
            if not any(row.values()):
                continue  # a blank row: removed
            tier = {}
            for cell in CELLS:
                raw = row.get(cell, "")
                if raw == "":
                    tier[cell] = None if cell == "up_to" else 0
                    continue
                try:
                    tier[cell] = int(raw)
                except ValueError:
                    problems.append(f"Row {index + 1}, {cell}: {raw!r} is not a whole number of minor units")
                    continue
                if tier[cell] < 0:
                    problems.append(f"Row {index + 1}, {cell}: must not be negative")
            tiers.append((index + 1, tier))
        if problems:
            raise ValidationError(problems, code="invalid_tier")
        problems = _order_problems(tiers)
        # The file's own rules, in case they say more than the rows' checks above.
        plain = [tier for _, tier in tiers]
        if not problems and plain:
            problems = validate_tiers(unit_amount=None, tiers=plain, tiers_mode="graduated")
        if problems:
            raise ValidationError(problems, code="invalid_tier")
        return plain

    def has_changed(self, initial, data):
        try:
            return self.to_python(data) != (initial or [])
        except ValidationError:
            return True


def _order_problems(tiers: list[tuple[int, dict]]) -> list[str]:
    problems, previous = [], None
    for position, (row, tier) in enumerate(tiers):
        up_to, last = tier["up_to"], position == len(tiers) - 1
        if up_to is None:
            if not last:
                problems.append(f"Row {row}, up_to: only the last row is open-ended (blank = infinity)")
            continue
        if up_to < 1:
            problems.append(f"Row {row}, up_to: must be at least 1")
        elif previous is not None and up_to <= previous[1]:
            problems.append(f"Row {row}, up_to: {up_to} must be above row {previous[0]}'s {previous[1]}")
        previous = (row, up_to)
        if last:
            problems.append(f"Row {row}, up_to: the last row is open-ended; leave its up_to blank")
    return problems


OPTION_CELLS = ("currency", "unit_amount")


class CurrencyOptionsWidget(forms.Widget):
    """One block per other currency, posted as `<name>-<n>-currency`, `<name>-<n>-unit_amount`
    and the tier rows `<name>-<n>-tiers-<row>-<cell>`; one blank block adds a currency."""

    def format_value(self, value):
        options = value if isinstance(value, dict) else {}
        shown = [
            {
                "currency": currency,
                "unit_amount": "" if option.get("unit_amount") is None else str(option["unit_amount"]),
                "tiers": option.get("tiers") or [],
            }
            for currency, option in sorted(options.items())
            if isinstance(option, dict)
        ]
        return [*shown, {"currency": "", "unit_amount": "", "tiers": []}]

    def render(self, name, value, attrs=None, renderer=None):
        blocks = value if isinstance(value, list) else self.format_value(value)
        tiers = TiersWidget()
        body = format_html_join(
            "",
            '<fieldset class="currency-option"><legend>{}</legend>'
            '<label>Currency <input type="text" name="{}-{}-currency" value="{}" size="4" '
            'maxlength="3" placeholder="eur"></label> '
            '<label>Unit amount (minor units) <input type="text" inputmode="numeric" '
            'name="{}-{}-unit_amount" value="{}" size="8"></label>'
            "<p>Or tiers, with the same bounds as the base currency's:</p>{}</fieldset>",
            (
                (
                    block["currency"].upper() or "Add a currency",
                    name,
                    index,
                    block["currency"],
                    name,
                    index,
                    block["unit_amount"],
                    tiers.render(f"{name}-{index}-tiers", block["tiers"]),
                )
                for index, block in enumerate(blocks)
            ),
        )
        return format_html(
            '<div class="currency-options">{}</div><input type="hidden" name="{}-currencies" value="{}">',
            body,
            name,
            len(blocks),
        )

    def value_from_datadict(self, data, files, name):
        blocks, index, tiers = [], 0, TiersWidget()
        while index < 100 and f"{name}-{index}-currency" in data:
            block = {cell: (data.get(f"{name}-{index}-{cell}") or "").strip() for cell in OPTION_CELLS}
            block["tiers"] = tiers.value_from_datadict(data, files, f"{name}-{index}-tiers")
            blocks.append(block)
            index += 1
        return blocks

    def value_omitted_from_data(self, data, files, name):
        return f"{name}-currencies" not in data and f"{name}-0-currency" not in data


class CurrencyOptionsField(forms.Field):
    """`{"eur": {"unit_amount": 4500}}` or `{"eur": {"tiers": [...]}}`, from blocks of rows."""

    widget = CurrencyOptionsWidget

    def to_python(self, value):
        if isinstance(value, dict):
            return value  # already options (the initial value)
        if not isinstance(value, list):
            return {}
        options, problems, rows = {}, [], TiersField()
        for index, block in enumerate(value):
            currency = block.get("currency", "").lower()
            raw_amount = block.get("unit_amount", "")
            tier_rows = [row for row in block.get("tiers") or [] if any(row.values())]
            if not (currency or raw_amount or tier_rows):
                continue  # a blank block: removed
            label = currency.upper() or f"Currency {index + 1}"
            if not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
                problems.append(
                    f"{label}: the currency must be a three-letter code such as eur, not {currency!r}."
                )
                continue
            if currency in options:
                problems.append(f"{label} is given twice; give each currency once.")
                continue
            try:
                tiers = rows.to_python(tier_rows)
            except ValidationError as error:
                problems.extend(f"{label} tiers: {message}." for message in error.messages)
                continue
            if raw_amount and tiers:
                problems.append(f"{label}: give a unit amount or tiers, not both.")
            elif tiers:
                options[currency] = {"tiers": tiers}
            elif not raw_amount:
                problems.append(f"{label}: give a unit amount or tiers (or clear the currency to remove it).")
            elif not raw_amount.isdigit():
                problems.append(
                    f"{label}: the unit amount {raw_amount!r} is not a whole number of minor units."
                )
            else:
                options[currency] = {"unit_amount": int(raw_amount)}
        if problems:
            raise ValidationError(problems, code="invalid_currency_option")
        return options

    def has_changed(self, initial, data):
        try:
            return self.to_python(data) != (initial or {})
        except ValidationError:
            return True
