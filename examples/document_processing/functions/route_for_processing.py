# Agent 4: Smart Router.
# Validates the document, then sends it to a human or approves it automatically.

def route_for_processing(input):
    validation = validate_business_rules(input)

    if validation["requires_review"]:
        result = notify_human_reviewer({"document": input, "analysis": validation})
        path = "human_review"
    else:
        result = auto_approve_document({"document": input, "validation": validation})
        path = "auto_approved"

    return {"routed": True, "path": path, "risk_score": validation["risk_score"], "result": result}
