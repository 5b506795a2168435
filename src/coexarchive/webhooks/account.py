"""``field: "account_update"``: WABA lifecycle, restrictions and Coexistence disconnections."""

from __future__ import annotations

from enum import StrEnum

from coexarchive.webhooks._base import IdText, Timestamp, WebhookModel


class AccountEvent(StrEnum):
    """Known ``account_update`` events (open)."""

    ACCOUNT_DELETED = "ACCOUNT_DELETED"
    ACCOUNT_RESTRICTION = "ACCOUNT_RESTRICTION"
    ACCOUNT_VIOLATION = "ACCOUNT_VIOLATION"
    AD_ACCOUNT_LINKED = "AD_ACCOUNT_LINKED"
    AUTH_INTL_PRICE_ELIGIBILITY_UPDATE = "AUTH_INTL_PRICE_ELIGIBILITY_UPDATE"
    BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE = "BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE"
    DISABLED_UPDATE = "DISABLED_UPDATE"
    MM_LITE_TERMS_SIGNED = "MM_LITE_TERMS_SIGNED"
    PARTNER_ADDED = "PARTNER_ADDED"
    PARTNER_APP_INSTALLED = "PARTNER_APP_INSTALLED"
    PARTNER_APP_UNINSTALLED = "PARTNER_APP_UNINSTALLED"
    PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE = "PARTNER_CLIENT_CERTIFICATION_STATUS_UPDATE"
    PARTNER_REMOVED = "PARTNER_REMOVED"
    VOLUME_BASED_PRICING_TIER_UPDATE = "VOLUME_BASED_PRICING_TIER_UPDATE"
    ACCOUNT_OFFBOARDED = "ACCOUNT_OFFBOARDED"
    ACCOUNT_RECONNECTED = "ACCOUNT_RECONNECTED"


class RestrictionInfo(WebhookModel):
    restriction_type: str | None = None
    expiration: Timestamp | None = None
    remediation: str | None = None


class ViolationInfo(WebhookModel):
    violation_type: str | None = None


class BanInfo(WebhookModel):
    waba_ban_state: str | None = None  # DISABLE, REINSTATE, SCHEDULE_FOR_DISABLE
    waba_ban_date: str | None = None  # a human-readable date


class WabaInfo(WebhookModel):
    waba_id: IdText | None = None
    owner_business_id: IdText | None = None
    partner_app_id: IdText | None = None
    solution_id: IdText | None = None
    solution_partner_business_ids: list[IdText] | None = None


class DisconnectionInfo(WebhookModel):
    """Why a Coexistence number was disconnected (e.g. PRIMARY_INACTIVITY, initiated by SYSTEM)."""

    reason: str | None = None
    initiated_by: str | None = None


class AccountUpdate(WebhookModel):
    """``value`` of ``account_update``."""

    event: str
    phone_number: IdText | None = None
    country: str | None = None
    restriction_info: list[RestrictionInfo] | None = None
    violation_info: ViolationInfo | None = None
    ban_info: BanInfo | None = None
    waba_info: WabaInfo | None = None
    disconnection_info: DisconnectionInfo | None = None
