# The distribution column, step 3 of 3: rows written meanwhile by code that did not set it are
# backfilled again, then the foreign key and NOT NULL are validated without blocking writes, and
# the indexes and unique constraints that lead with the organization replace those that led
# with its parent, built concurrently before the old ones go.

import django.db.models.deletion
from django.db import migrations, models

from common.online_migrations import (
    AddIndexOnline,
    AddUniqueOnline,
    RemoveIndexOnline,
    RequireOrganization,
    backfill_organization,
)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("credits", "0010_organization_backfill")]

    operations = [
        backfill_organization("credits_creditgrant", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_credittransaction", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditusageday", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditreservation", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditrecharge", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditpurchase", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditdispute", parent="credits_creditaccount", via="account_id"),
        backfill_organization(
            "credits_creditallocation", parent="credits_credittransaction", via="transaction_id"
        ),
        RequireOrganization(
            model_name="creditgrant",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        RequireOrganization(
            model_name="credittransaction",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        RequireOrganization(
            model_name="creditusageday",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="teams.organization",
            ),
        ),
        RequireOrganization(
            model_name="creditreservation",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        RequireOrganization(
            model_name="creditrecharge",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="teams.organization"
            ),
        ),
        RequireOrganization(
            model_name="creditpurchase",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="teams.organization"
            ),
        ),
        RequireOrganization(
            model_name="creditdispute",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        RequireOrganization(
            model_name="creditallocation",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        AddIndexOnline(
            model_name="creditgrant",
            index=models.Index(
                fields=["organization", "priority", "expires_at", "created_at"],
                name="credits_grant_org_drawable",
            ),
        ),
        RemoveIndexOnline(model_name="creditgrant", name="credits_grant_drawable"),
        AddIndexOnline(
            model_name="credittransaction",
            index=models.Index(fields=["organization", "id"], name="credits_txn_org_recent"),
        ),
        RemoveIndexOnline(model_name="credittransaction", name="credits_txn_account_recent"),
        AddIndexOnline(
            model_name="credittransaction",
            index=models.Index(
                condition=models.Q(("type", "consumption"), _negated=True),
                fields=["organization", "type"],
                name="credits_txn_org_type",
            ),
        ),
        RemoveIndexOnline(model_name="credittransaction", name="credits_txn_type"),
        AddIndexOnline(
            model_name="credittransaction",
            index=models.Index(
                condition=models.Q(("reference_id", ""), _negated=True),
                fields=["organization", "reference_type", "reference_id"],
                name="credits_txn_org_reference",
            ),
        ),
        RemoveIndexOnline(model_name="credittransaction", name="credits_txn_reference"),
        AddUniqueOnline(
            model_name="credittransaction",
            constraint=models.UniqueConstraint(
                fields=("organization", "idempotency_key"), name="credits_credittransaction_unique_org_key"
            ),
        ),
        migrations.RemoveConstraint(
            model_name="credittransaction", name="credits_credittransaction_unique_idempotency_key"
        ),
        AddUniqueOnline(
            model_name="creditallocation",
            constraint=models.UniqueConstraint(
                fields=("organization", "transaction", "grant"),
                name="credits_creditallocation_unique_org_grant",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="creditallocation", name="credits_creditallocation_unique_grant"
        ),
        AddUniqueOnline(
            model_name="creditusageday",
            constraint=models.UniqueConstraint(
                fields=("organization", "day", "action"), name="credits_creditusageday_unique_org_day"
            ),
        ),
        migrations.RemoveConstraint(model_name="creditusageday", name="credits_creditusageday_unique_day"),
        AddUniqueOnline(
            model_name="creditreservation",
            constraint=models.UniqueConstraint(
                fields=("organization", "idempotency_key"), name="credits_creditreservation_unique_org_key"
            ),
        ),
        migrations.RemoveConstraint(
            model_name="creditreservation", name="credits_creditreservation_unique_idempotency_key"
        ),
        AddUniqueOnline(
            model_name="creditrecharge",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "pending")),
                fields=("organization",),
                name="credits_creditrecharge_org_one_in_flight",
            ),
        ),
        migrations.RemoveConstraint(model_name="creditrecharge", name="credits_creditrecharge_one_in_flight"),
        # The organization's index now finds an account's purchases and recharges.
        migrations.AlterField(
            model_name="creditpurchase",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="purchases",
                to="credits.creditaccount",
            ),
        ),
        migrations.AlterField(
            model_name="creditrecharge",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="recharges",
                to="credits.creditaccount",
            ),
        ),
    ]
