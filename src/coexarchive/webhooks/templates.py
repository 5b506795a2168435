"""Template lifecycle fields: status, quality and category updates (WABA-routed)."""

from __future__ import annotations

from coexarchive.webhooks._base import IdText, Timestamp, WebhookModel


class DisableInfo(WebhookModel):
    disable_date: Timestamp | None = None


class OtherInfo(WebhookModel):
    title: str | None = None  # FIRST_PAUSE, SECOND_PAUSE, RATE_LIMITING_PAUSE, UNPAUSE, DISABLED
    description: str | None = None


class RejectionInfo(WebhookModel):
    reason: str | None = None
    recommendation: str | None = None


class TemplateStatusUpdate(WebhookModel):
    """``message_template_status_update``: APPROVED, REJECTED, PAUSED, DISABLED, …"""

    event: str
    message_template_id: IdText | None = None
    message_template_name: str | None = None
    message_template_language: str | None = None
    reason: str | None = None  # null when scheduled for deletion
    message_template_category: str | None = None
    disable_info: DisableInfo | None = None
    other_info: OtherInfo | None = None
    rejection_info: RejectionInfo | None = None


class TemplateQualityUpdate(WebhookModel):
    """``message_template_quality_update``: scores GREEN, YELLOW, RED or UNKNOWN."""

    previous_quality_score: str | None = None
    new_quality_score: str | None = None
    message_template_id: IdText | None = None
    message_template_name: str | None = None
    message_template_language: str | None = None


class TemplateCategoryUpdate(WebhookModel):
    """``template_category_update``: an upcoming (``correct_category``) or completed change."""

    message_template_id: IdText | None = None
    message_template_name: str | None = None
    message_template_language: str | None = None
    previous_category: str | None = None
    new_category: str | None = None
    correct_category: str | None = None
    category_update_timestamp: Timestamp | None = None
