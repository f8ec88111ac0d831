from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm

from teams import throttle
from teams.access import client_ip
from teams.models import Role, Scope, TwoFactor, User


class SignupForm(forms.Form):
    name = forms.CharField(max_length=150, required=False)
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email already exists; log in.")
        return email

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("email"):
            candidate = User(email=data["email"], name=data.get("name", ""))
            try:
                password_validation.validate_password(data["password"], candidate)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return data


class ThrottledAuthentication:
    """For authentication forms: refused while the account or address is locked out (even with
    the right password), and every wrong password counted towards the lockout."""

    throttled = False

    def clean(self):
        account = self.cleaned_data.get("username") or ""
        address = client_ip(self.request) if self.request else None
        refused = throttle.throttle_hit(throttle.LOGIN, account=account, address=address, record=False)
        if refused:
            self.throttled = True
            raise forms.ValidationError(refused, code="throttled")
        try:
            return super().clean()
        except forms.ValidationError as error:
            if error.code == "invalid_login":
                throttle.throttle_hit(throttle.LOGIN, account=account, address=address)
            raise


class LoginForm(ThrottledAuthentication, AuthenticationForm):
    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True}))


class AdminLoginForm(ThrottledAuthentication, AdminAuthenticationForm):
    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        # The admin's form has no second step: such an account signs in on the site's form.
        if TwoFactor.objects.filter(user=user, confirmed_at__isnull=False).exists():
            raise forms.ValidationError(
                "This account uses two-factor sign-in: log in on the site's sign-in page, then "
                "open the admin.",
                code="two_factor",
            )


class ThrottledPasswordResetForm(PasswordResetForm):
    """Each request counts, whether or not the address has an account, so the answer reveals
    nothing and no inbox can be flooded."""

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        address = client_ip(self.request) if self.request else None
        refused = throttle.throttle_hit(throttle.PASSWORD_RESET, account=email, address=address)
        if refused:
            raise forms.ValidationError(refused, code="throttled")
        return email


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=100)


class OrganizationSettingsForm(forms.Form):
    name = forms.CharField(max_length=100)
    billing_email = forms.EmailField(required=False, help_text="Where invoices and receipts go.")


class OrganizationDeleteForm(forms.Form):
    confirm = forms.CharField(max_length=100, help_text="The organization's name, to confirm.")


INVITE_ROLES = [(r.value, r.label) for r in Role if r != Role.OWNER]


class InvitationForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=INVITE_ROLES, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TransferForm(forms.Form):
    member = forms.UUIDField()


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. 'production server'.")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        initial=[Scope.READ],
        widget=forms.CheckboxSelectMultiple,
        help_text="Give a key only what its program needs.",
        error_messages={"required": "Choose at least one scope for the key."},
    )


class TwoFactorCodeForm(forms.Form):
    code = forms.CharField(
        max_length=32,
        label="Code",
        help_text="The 6 digits your app shows, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text"}
        ),
    )


class TwoFactorConfirmForm(forms.Form):
    code = forms.CharField(
        max_length=16,
        label="Code from your app",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class TwoFactorDisableForm(forms.Form):
    code = forms.CharField(max_length=32, required=False, label="A current code")
    password = forms.CharField(
        widget=forms.PasswordInput, strip=False, required=False, label="Or your password"
    )


class TwoFactorRequirementForm(forms.Form):
    require_two_factor = forms.BooleanField(
        required=False, label="Require two-factor sign-in for owners, admins and billing managers"
    )
