# Parses an invoice's text with regular expressions.
import re

NUMBER = re.compile(r"invoice\s*(?:number\b|no\b\.?|#)\s*:?\s*#?\s*([A-Z]*-?\d[\w-]*)", re.I)
TOTAL = re.compile(r"\btotal(?:\s+(?:due|amount))?\s*:?\s*([$\u20ac\u00a3])?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?", re.I)
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
CODE = re.compile(r"\b(USD|EUR|GBP)\b")
SYMBOLS = {"$": "USD", "\u20ac": "EUR", "\u00a3": "GBP"}


def extract_invoice_data(input):
    text = input["content"]
    number = NUMBER.search(text)
    total = TOTAL.search(text)
    date = DATE.search(text)
    currency = None
    if total:
        code = CODE.search(text)
        currency = SYMBOLS.get(total.group(1)) or (code.group(1) if code else None)
    return {
        "number": number.group(1) if number else None,
        "total": float(total.group(2).replace(",", "") + "." + (total.group(3) or "0")) if total else None,
        "currency": currency,
        "date": date.group(0) if date else None,
    }
