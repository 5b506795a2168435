"""Content: people and words. Real-looking, multilingual, all invented."""

from __future__ import annotations

import random
from typing import Any

_PEOPLE: tuple[tuple[str, str, str, str], ...] = (
    # (profile name, country calling code, ISO country, language)
    ("Amelia Hart", "44", "GB", "en"),
    ("João Pereira", "55", "BR", "pt"),
    ("فاطمة الزهراء", "971", "AE", "ar"),
    ("प्रिया शर्मा", "91", "IN", "hi"),
    ("Lucía Fernández", "34", "ES", "es"),
    ("Ana Beatriz Costa", "55", "BR", "pt"),
    ("محمد العتيبي", "966", "SA", "ar"),
    ("राहुल वर्मा", "91", "IN", "hi"),
    ("Olumide Adebayo", "44", "GB", "en"),
    ("Wei Chen 陈伟", "65", "SG", "en"),
    ("Zoë O'Connor", "353", "IE", "en"),
    ("Mateus Conceição", "351", "PT", "pt"),
)

_INBOUND: dict[str, tuple[str, ...]] = {
    "en": (
        "Hi, is my order ready?",
        "Can I change the delivery address? 🏠",
        "Thanks so much! 🙏",
        "What time do you close today?",
        "The parcel arrived damaged 😞 can you help?",
        "Do you deliver on Saturdays?",
        "STOP",
        "Great, see you Tuesday 👍",
    ),
    "pt": (
        "Olá! Meu pedido já foi enviado?",
        "Vocês abrem no domingo?",
        "Obrigado pela atenção 😊",
        "Quero trocar o tamanho da camisa, é possível?",
        "PARAR",
        "Qual é o prazo de entrega para São Paulo?",
    ),
    "ar": (
        "مرحبا، هل طلبي جاهز؟",
        "متى تفتحون غدا؟",
        "شكرا جزيلا 🌙",
        "أريد إلغاء الطلب من فضلك",
        "توقف",
    ),
    "hi": (
        "नमस्ते, मेरा ऑर्डर कब आएगा?",
        "क्या आप रविवार को खुले हैं?",
        "धन्यवाद! 🙏",
        "मुझे रिफंड चाहिए",
        "रोकें",
    ),
    "es": (
        "Hola, ¿mi pedido ya salió?",
        "¿Tienen esta talla en azul? 💙",
        "¡Gracias! Todo perfecto.",
        "BAJA",
    ),
}

_REPLIES: dict[str, tuple[str, ...]] = {
    "en": (
        "Yes, it's ready - pick up any time after 2pm.",
        "Sorry about that! We'll send a replacement today 📦",
        "We're open until 6pm.",
        "Done ✅ your address is updated.",
    ),
    "pt": (
        "Sim! Seu pedido saiu para entrega hoje 🚚",
        "Abrimos domingo das 10h às 16h.",
        "Claro, pode trazer a peça na loja.",
    ),
    "ar": ("نعم، طلبك جاهز للاستلام ✅", "نفتح الساعة التاسعة صباحا.", "تم إلغاء طلبك."),
    "hi": ("जी हाँ, आपका ऑर्डर कल पहुँचेगा 🚚", "हम रविवार को बंद रहते हैं।", "रिफंड शुरू कर दिया गया है।"),
    "es": ("¡Sí! Sale hoy por la tarde 🚚", "Sí, la tenemos en azul.", "¡Gracias a ti!"),
}

_MEDIA_CAPTIONS = ("Is this the one?", "Foto do produto", "الفاتورة", "रसीद", "", "📸")
_EMOJI = ("👍", "❤️", "😂", "🙏", "😮", "🎉", "")

# (name, language, category, id)
_TEMPLATES: tuple[tuple[str, str, str, int], ...] = (
    ("spring_sale_reminder", "en_GB", "MARKETING", 1700000000000042),
    ("order_update", "pt_BR", "UTILITY", 1700000000000043),
    ("login_code", "en_US", "AUTHENTICATION", 1700000000000044),
    ("ramadan_offer", "ar", "MARKETING", 1700000000000045),
    ("appointment_reminder", "hi", "UTILITY", 1700000000000046),
)

# Every inbound type of the catalogue (reference §2.2); the first messages of a simulation take
# them in this order so that a small simulation still has each one.
_INBOUND_TYPES: tuple[str, ...] = (
    "unsupported",
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "order",
    "system",
    "edit",
    "revoke",
)
_TYPE_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("text", 62),
    ("image", 8),
    ("audio", 5),
    ("reaction", 5),
    ("document", 3),
    ("video", 2),
    ("sticker", 2),
    ("interactive", 3),
    ("button", 2),
    ("location", 1),
    ("contacts", 1),
    ("order", 1),
    ("edit", 2),
    ("revoke", 1),
    ("unsupported", 1),
    ("system", 1),
)


def _next_id(number: str) -> str:
    return str(int(number) + 1) if number.isdigit() else number + "-2"


def _referral(rng: random.Random) -> dict[str, Any]:
    return {
        "source_url": "https://fb.me/9xQwErTy1",
        "source_id": str(120000000000000000 + rng.randrange(1000)),
        "source_type": "ad",
        "headline": "Promoção de verão ☀️",
        "body": "20% off garden tools",
        "media_type": "image",
        "image_url": "https://scontent.example.invalid/ad.jpg",
        "ctwa_clid": f"ARA{rng.getrandbits(120):030x}",
        "welcome_message": {"text": "Hi! How can we help?"},
    }


def _shared_contact(rng: random.Random) -> dict[str, Any]:
    digits = "".join(str(rng.randrange(10)) for _ in range(8))
    return {
        "name": {"formatted_name": "Ravi Kumar", "first_name": "Ravi", "last_name": "Kumar"},
        "phones": [{"phone": f"+91 98{digits}", "wa_id": f"9198{digits}", "type": "CELL"}],
        "emails": [{"email": "ravi@example.invalid", "type": "WORK"}],
    }


def _interactive(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(3)
    if choice == 0:
        return {
            "type": "button_reply",
            "button_reply": {"id": "confirm_slot_2", "title": "Terça 10:00"},
        }
    if choice == 1:
        reply = {"id": "size_m", "title": "Tamanho M", "description": "Camisa azul"}
        return {"type": "list_reply", "list_reply": reply}
    flow = {"name": "flow", "body": "Sent", "response_json": '{"rating":"5","comment":"ótimo 👌"}'}
    return {"type": "nfm_reply", "nfm_reply": flow}
