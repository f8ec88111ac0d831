"""Where every table would live if PostgreSQL were sharded by organization (Citus, say).

- distributed: split by organization, so each organization's rows sit together on one node;
  the column named is the distribution column, NOT NULL, and the hot queries filter by it.
- reference: the catalog and the people, small and read everywhere: a copy on every node.
- local: global logs and queues that no organization owns: they stay on the coordinator.

Written once here; `tests/test_tenancy.py` fails on a table of the database missing from it, on a
distributed table without its column, and on a README table that says otherwise.
"""

DISTRIBUTED = "distributed"
REFERENCE = "reference"
LOCAL = "local"

# table -> (kind, distribution column or "", why)
TENANCY: dict[str, tuple[str, str, str]] = {
    # --- distributed, by organization ---------------------------------------------------------
    "teams_organization": (DISTRIBUTED, "id", "the tenant itself: its id is everyone's organization_id"),
    "teams_membership": (DISTRIBUTED, "organization_id", "who belongs to the organization"),
    "teams_invitation": (DISTRIBUTED, "organization_id", "invitations to the organization"),
    "teams_apikey": (DISTRIBUTED, "organization_id", "the organization's API keys"),
    "teams_auditevent": (DISTRIBUTED, "organization_id", "the organization's audit log"),
    "billing_orgsubscription": (DISTRIBUTED, "organization_id", "the organization's subscription"),
    "billing_seatsyncdue": (DISTRIBUTED, "organization_id", "membership changes not yet synced to Stripe"),
    "billing_trialrecord": (DISTRIBUTED, "organization_id", "trials the organization has had"),
    "billing_subscriptionduplicate": (DISTRIBUTED, "organization_id", "a second live subscription found"),
    "billing_subscriptiondiscount": (DISTRIBUTED, "organization_id", "coupons applied to its subscription"),
    "billing_pricemigration": (DISTRIBUTED, "organization_id", "its subscription's move to a new price"),
    "billing_payment": (DISTRIBUTED, "organization_id", "its payment history"),
    "billing_paymentdispute": (DISTRIBUTED, "organization_id", "disputes of its payments"),
    "billing_plancheckout": (DISTRIBUTED, "organization_id", "its checkouts of a plan"),
    "billing_addonpurchase": (DISTRIBUTED, "organization_id", "add-ons it bought"),
    "billing_entitlementgrant_organizations": (
        DISTRIBUTED,
        "organization_id",
        "which organizations a grant covers",
    ),
    "billing_usagecounter": (DISTRIBUTED, "organization_id", "its usage per feature and period"),
    "billing_usagealert": (DISTRIBUTED, "organization_id", "usage alerts sent to it"),
    "billing_usageevent": (DISTRIBUTED, "organization_id", "its metered usage events"),
    "billing_usageday": (DISTRIBUTED, "organization_id", "its usage per meter (or feature) and day"),
    "billing_meterreport": (DISTRIBUTED, "organization_id", "its usage reports to Stripe (outbox)"),
    "billing_billingprofile": (DISTRIBUTED, "organization_id", "its billing address and tax ids"),
    "billing_notice": (DISTRIBUTED, "organization_id", "notices to its members"),
    "billing_noticepreference": (DISTRIBUTED, "organization_id", "its members' notice settings"),
    "credits_creditaccount": (DISTRIBUTED, "organization_id", "its credit balance"),
    "credits_creditgrant": (DISTRIBUTED, "organization_id", "its buckets of credits"),
    "credits_credittransaction": (DISTRIBUTED, "organization_id", "its credit ledger"),
    "credits_creditallocation": (DISTRIBUTED, "organization_id", "the grants of lines that name none"),
    "credits_creditusageday": (DISTRIBUTED, "organization_id", "its daily consumption roll-up"),
    "credits_creditreservation": (DISTRIBUTED, "organization_id", "its credit holds"),
    "credits_creditrecharge": (DISTRIBUTED, "organization_id", "its automatic top-ups"),
    "credits_creditpurchase": (DISTRIBUTED, "organization_id", "its credit purchases"),
    "projects_project": (DISTRIBUTED, "organization_id", "its projects"),
    "projects_generation": (DISTRIBUTED, "organization_id", "its projects' generations"),
    # --- reference: the catalog and the people, on every node ---------------------------------
    "billing_product": (REFERENCE, "", "catalog: products on sale"),
    "billing_plan": (REFERENCE, "", "catalog: plans"),
    "billing_planlineitem": (REFERENCE, "", "catalog: a plan's prices"),
    "billing_priceversion": (REFERENCE, "", "catalog: the prices a line item has sold at"),
    "billing_feature": (REFERENCE, "", "catalog: features"),
    "billing_planentitlement": (REFERENCE, "", "catalog: what each plan allows"),
    "billing_addon": (REFERENCE, "", "catalog: add-ons"),
    "billing_addonentitlement": (REFERENCE, "", "catalog: what each add-on allows"),
    "billing_meter": (REFERENCE, "", "catalog: billing meters"),
    "billing_coupon": (REFERENCE, "", "catalog: coupons"),
    "billing_coupon_products": (REFERENCE, "", "catalog: the products a coupon applies to"),
    "billing_promotioncode": (REFERENCE, "", "catalog: promotion codes"),
    "billing_entitlementgrant": (
        REFERENCE,
        "",
        "one grant may cover many organizations (a cohort); which ones is distributed",
    ),
    "credits_creditpackage": (REFERENCE, "", "catalog: credit packs"),
    "credits_creditprice": (REFERENCE, "", "catalog: what each action costs"),
    "teams_user": (REFERENCE, "", "a person may belong to several organizations"),
    "teams_twofactor": (REFERENCE, "", "a person's second factor, with the users"),
    "teams_recoverycode": (REFERENCE, "", "a person's recovery codes, with the users"),
    "teams_user_groups": (REFERENCE, "", "staff permissions, with the users"),
    "teams_user_user_permissions": (REFERENCE, "", "staff permissions, with the users"),
    "auth_group": (REFERENCE, "", "staff permission groups"),
    "auth_group_permissions": (REFERENCE, "", "staff permission groups"),
    "auth_permission": (REFERENCE, "", "Django's permissions"),
    "django_content_type": (REFERENCE, "", "Django's model registry"),
    # --- local: global, on the coordinator ----------------------------------------------------
    "teams_queuedtask": (LOCAL, "", "the task outbox, drained by one relay for everyone"),
    "billing_stripeeventoutcome": (LOCAL, "", "Stripe's event log, keyed by event id, retried globally"),
    "billing_catalogstripestate": (LOCAL, "", "the catalog's push state, written by staff jobs"),
    "credits_creditdispute": (
        LOCAL,
        "",
        "recorded from Stripe before its organization is known (if it has one)",
    ),
    "django_session": (LOCAL, "", "sessions, read before any organization is known"),
    "django_admin_log": (LOCAL, "", "staff's admin log"),
    "django_migrations": (LOCAL, "", "the schema's history"),
}

# dj-stripe's tables, by prefix: its mirror of Stripe's objects and its event log, keyed by
# Stripe's ids and written by webhooks before Tally knows whose they are.
PREFIXES: dict[str, tuple[str, str, str]] = {
    "djstripe_": (LOCAL, "", "dj-stripe's mirror of Stripe and its event log, keyed by Stripe's ids"),
}


def tenancy_of(table: str) -> tuple[str, str, str] | None:
    """The declaration of `table` (by name, else by prefix), or None when it has none."""
    if table in TENANCY:
        return TENANCY[table]
    return next((kind for prefix, kind in PREFIXES.items() if table.startswith(prefix)), None)
