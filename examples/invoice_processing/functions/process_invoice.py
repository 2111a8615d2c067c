# The invoice workflow: fetch, extract, validate, notify when high priority.

def process_invoice(input):
    # Fetch document ("content", when given, replaces the download)
    request = {"url": input.get("document_url") or ""}
    if input.get("content") is not None:
        request["content"] = input["content"]
    doc = fetch_document(request)

    # Extract data
    invoice_data = extract_invoice_data({"content": doc["content"]})

    # Validate customer
    validation = validate_customer({
        "customer_id": input["customer_id"],
        "invoice_data": invoice_data,
    })

    # Notify for high priority
    priority = input.get("priority") or "normal"
    notified = priority == "high"
    if notified:
        notify_team({"message": f"High priority invoice: {invoice_data['number'] or '(no number)'}"})

    return {
        "invoice_number": invoice_data["number"],
        "total": invoice_data["total"],
        "customer_valid": validation["is_valid"],
        "status": "processed",
        "priority": priority,
        "notified": notified,
    }
