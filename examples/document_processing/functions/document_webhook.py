# Webhook handler: the orchestrator behind POST /api/v1/h/process-document.
# input is the request: {"body", "headers", "query", "method", "path"}.

def document_webhook(input):
    body = input["body"]
    if not isinstance(body, dict) or "document_url" not in body:
        raise ValueError('send a JSON body like {"document_url": "https://..."}')
    request = {
        "url": body["document_url"],
        "user_id": input["headers"].get("X-User-ID", "anonymous"),
    }
    if "content" in body:  # lets a caller supply the text (the sandbox cannot download it)
        request["content"] = body["content"]

    result = route_for_processing(request)
    return {"success": True, "processing": result}
