# Agent 2: AI Analyzer.
# The seed "uses AI to extract structured data". Here regular expressions and
# keyword lists stand in for the model, so every run gives the same answer.
import re

AMOUNT = re.compile(r"\$\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
INVOICE_NUMBER = re.compile(r"invoice\s*(?:number\b|no\b\.?|#)\s*:?\s*#?\s*([A-Z]*-?\d[\w-]*)", re.I)

POSITIVE = {"thank", "thanks", "happy", "pleased", "great", "excellent", "appreciate", "satisfied", "welcome"}
NEGATIVE = {"overdue", "late", "dispute", "disputed", "complaint", "unpaid", "penalty", "fraud",
            "wrong", "error", "refund", "cancel", "terminate", "breach", "damaged", "unacceptable"}


def analyze_document(input):
    doc = fetch_document({k: input[k] for k in ("url", "content") if k in input})
    text = doc["content"]

    entities, amounts = [], []
    for m in AMOUNT.finditer(text):
        value = float(m.group(1).replace(",", "") + "." + (m.group(2) or "0"))
        amounts.append(value)
        entities.append({"type": "amount", "text": m.group(0), "value": value})
    entities += [{"type": "email", "text": e} for e in EMAIL.findall(text)]
    entities += [{"type": "date", "text": d} for d in DATE.findall(text)]
    numbers = INVOICE_NUMBER.findall(text)
    entities += [{"type": "invoice_number", "text": n} for n in numbers]

    # Keyword sentiment: more positive than negative words -> "positive", and so on.
    words = re.findall(r"[a-z]+", text.lower())
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    sentiment = "positive" if pos > neg else "negative" if neg > pos else "neutral"

    lower = text.lower()
    if numbers or any(k in lower for k in ("invoice", "bill to", "amount due")):
        category = "invoice"
    elif any(k in lower for k in ("contract", "agreement", "hereinafter")):
        category = "contract"
    else:
        category = "general"

    return {
        "url": doc["url"],
        "type": doc["type"],
        "entities": entities,
        "sentiment": sentiment,
        "category": category,
        "amount": max(amounts) if amounts else None,  # the largest amount: an invoice's total
        "invoice_number": numbers[0] if numbers else None,
        "word_count": len(text.split()),
    }
