# Agent 3: Business Validator.
# Each rule that fires adds risk points (out of 100) and a reason.
# A document needs a human when the risk score reaches 0.5.

BASELINE = 20            # any external document carries some risk
AUTO_APPROVE_LIMIT = 10000.0


def validate_business_rules(input):
    analysis = analyze_document(input)
    points, reasons, valid = BASELINE, [], True
    amount = analysis["amount"]
    is_invoice = analysis["category"] == "invoice"

    if analysis["word_count"] == 0:
        points, valid = points + 80, False
        reasons.append("the document is empty")
    if amount is not None and amount > AUTO_APPROVE_LIMIT:
        points += 40
        reasons.append(f"amount {amount:,.2f} is over the auto-approval limit of {AUTO_APPROVE_LIMIT:,.2f}")
    if analysis["sentiment"] == "negative":
        points += 20
        reasons.append("the document has a negative tone")
    if is_invoice and not analysis["invoice_number"]:
        points += 30
        reasons.append("invoice without an invoice number")
    if is_invoice and amount is None:
        points, valid = points + 30, False
        reasons.append("invoice without an amount")

    risk_score = min(points, 100) / 100
    return {
        "valid": valid,
        "risk_score": risk_score,
        "requires_review": risk_score >= 0.5,
        "reasons": reasons,
        "analysis": analysis,
    }
