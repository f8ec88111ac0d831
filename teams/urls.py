from django.contrib.auth import views as auth_views
from django.urls import path

from teams import views, views_twofactor

urlpatterns = [
    path("", views.landing, name="landing"),
    path("home/", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/two-factor/", views_twofactor.login_two_factor, name="login_two_factor"),
    path("account/two-factor/", views_twofactor.account_two_factor, name="account_two_factor"),
    path("account/two-factor/start/", views_twofactor.two_factor_start, name="two_factor_start"),
    path("account/two-factor/confirm/", views_twofactor.two_factor_confirm, name="two_factor_confirm"),
    path("account/two-factor/disable/", views_twofactor.two_factor_disable, name="two_factor_disable"),
    path("account/two-factor/required/", views_twofactor.two_factor_required, name="two_factor_required"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("orgs/new/", views.organization_create, name="organization_create"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("o/<slug:org_slug>/settings/", views.organization_settings, name="organization_settings"),
    path(
        "o/<slug:org_slug>/settings/two-factor/",
        views_twofactor.organization_two_factor,
        name="organization_two_factor",
    ),
    path("o/<slug:org_slug>/settings/delete/", views.organization_delete, name="organization_delete"),
    path("o/<slug:org_slug>/members/", views.members, name="members"),
    path("o/<slug:org_slug>/members/invite/", views.invitation_create, name="invitation_create"),
    path("o/<slug:org_slug>/members/transfer/", views.ownership_transfer, name="ownership_transfer"),
    path("o/<slug:org_slug>/members/leave/", views.organization_leave, name="organization_leave"),
    path("o/<slug:org_slug>/members/<uuid:code>/role/", views.membership_role, name="membership_role"),
    path(
        "o/<slug:org_slug>/members/<uuid:code>/remove/",
        views.membership_remove,
        name="membership_remove",
    ),
    path(
        "o/<slug:org_slug>/invitations/<uuid:code>/resend/",
        views.invitation_resend,
        name="invitation_resend",
    ),
    path(
        "o/<slug:org_slug>/invitations/<uuid:code>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("o/<slug:org_slug>/keys/", views.api_keys, name="api_keys"),
    path("o/<slug:org_slug>/keys/<uuid:code>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
