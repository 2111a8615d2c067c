# Approval agent: approves a low-risk document.
# The approval id is a checksum of the document request, so the same request
# always gets the same id (the real version would store the approval).
import json


def _checksum(text):
    h = 0
    for c in text:
        h = (h * 31 + ord(c)) & 0xFFFFFFFF
    return h


def auto_approve_document(input):
    document = input["document"]
    approval_id = f"APR-{_checksum(json.dumps(document, sort_keys=True)):08X}"
    print(f"[auto-approve] {document.get('url')} approved as {approval_id}")
    return {"approved": True, "approval_id": approval_id, "risk_score": input["validation"]["risk_score"]}
