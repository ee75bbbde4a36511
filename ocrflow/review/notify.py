"""Example automations that tell people when review needs them, made by ``ocrflow setup``.

With ``OCRFLOW_REVIEW__NOTIFY_WEBHOOK_URL`` set, setup saves a Prefect webhook notification
block ``ocrflow-review-notify`` (a ``CustomWebhookNotificationBlock`` posting JSON
``{"subject", "text"}``: Slack, Teams, Mattermost and most chat tools take it, or point it at
your own endpoint) and two automations that send through it:

- ``ocrflow: review requested``: on every ``ocrflow.review.requested`` event;
- ``ocrflow: review overdue``: on every ``ocrflow.review.overdue`` event.

Both are ordinary Prefect automations: edit them in the Prefect UI, or swap the block for an
e-mail one (``EmailServerCredentials`` / ``prefect-email``) and keep the triggers. Without the
setting nothing is made, since a notification needs somewhere to go.
"""

from __future__ import annotations

from ocrflow.prefect_setup import Step
from ocrflow.review.operations import REVIEW_OVERDUE, REVIEW_REQUESTED
from ocrflow.settings import Settings

NOTIFY_BLOCK = "ocrflow-review-notify"
AUTOMATIONS = {
    "ocrflow: review requested": (
        REVIEW_REQUESTED,
        "ocrflow: {{ event.resource['prefect.resource.name'] }} waits for review",
        "Review item {{ event.payload.item }} ({{ event.payload.doc_type or 'unknown type' }}): "
        "{{ event.payload.reasons | join(', ') }}. {{ event.payload.review_url or '' }}",
    ),
    "ocrflow: review overdue": (
        REVIEW_OVERDUE,
        "ocrflow: review of {{ event.resource['prefect.resource.name'] }} is overdue",
        "Review item {{ event.payload.item }} ({{ event.payload.doc_type or 'unknown type' }}) was due "
        "{{ event.payload.due_at }}; assigned to {{ event.payload.assigned_to or 'nobody' }}. "
        "{{ event.payload.review_url or '' }}",
    ),
}


def review_notifications(settings: Settings) -> list[Step]:
    """Create or align the notification block and the two automations; twice changes nothing."""
    url = settings.review.notify_webhook_url
    if not url:
        return []
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    steps = []
    try:
        block = CustomWebhookNotificationBlock.load(NOTIFY_BLOCK)
        action = "unchanged" if block.url == url else "updated"
    except ValueError:
        block, action = None, "created"
    if action != "unchanged":
        block = CustomWebhookNotificationBlock(
            name="ocrflow review", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
        )
        block.save(NOTIFY_BLOCK, overwrite=True)
        block = CustomWebhookNotificationBlock.load(NOTIFY_BLOCK)
    steps.append(Step("notification block", NOTIFY_BLOCK, action, "webhook"))
    block_id = block._block_document_id
    for name, (event, subject, body) in AUTOMATIONS.items():
        wanted = Automation(
            name=name,
            description=f"Notify through the {NOTIFY_BLOCK} block on every {event} event (ocrflow setup).",
            trigger=EventTrigger(
                expect={event},
                match={"prefect.resource.id": "ocrflow.review-item.*"},
                posture=Posture.Reactive,
                threshold=1,
                within=0,
            ),
            actions=[SendNotification(block_document_id=block_id, subject=subject, body=body)],
        )
        try:
            existing = Automation.read(name=name)
        except ValueError:
            existing = None
        if existing is None:
            wanted.create()
            steps.append(Step("automation", name, "created", event))
        elif (existing.trigger.expect, existing.actions) != (wanted.trigger.expect, wanted.actions):
            wanted.id = existing.id
            wanted.update()
            steps.append(Step("automation", name, "updated", event))
        else:
            steps.append(Step("automation", name, "unchanged", event))
    return steps
