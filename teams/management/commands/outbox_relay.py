from django.core.management.base import BaseCommand

from teams.outbox import outbox_depth, outbox_relay


class Command(BaseCommand):
    help = "Publish to the broker the tasks queued while it was away (also every 30 s from beat)."

    def handle(self, *args, **options):
        sent = outbox_relay()
        self.stdout.write(f"sent {sent}, {outbox_depth()} still queued")
