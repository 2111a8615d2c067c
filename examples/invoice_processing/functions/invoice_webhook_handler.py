# Webhook handler behind POST /api/v1/h/process-invoice.
# input is the request: {"body", "headers", "query", "method", "path"}.

def invoice_webhook_handler(input):
    body = input.get("body")
    if not isinstance(body, dict):
        body = {}
    query = input.get("query") or {}

    # Extract webhook data; priority may come from ?priority= or from the body
    document_url = body.get("url")
    customer_id = input["headers"].get("X-Customer-ID", "unknown")
    priority = query.get("priority") or body.get("priority") or "normal"
    if isinstance(priority, list):  # ?priority=a&priority=b
        priority = priority[0]

    # Call main workflow
    request = {"document_url": document_url, "customer_id": customer_id, "priority": priority}
    if "content" in body:
        request["content"] = body["content"]
    result = process_invoice(request)

    return {"success": True, "invoice": result}
