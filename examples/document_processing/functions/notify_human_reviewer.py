# Notification agent: puts the document on the human-review queue.
# Posts to a chat webhook when the tenant has one (secret REVIEW_WEBHOOK_URL).
import maestro

REVIEWERS = {"invoice": "finance-review@example.com", "contract": "legal-review@example.com"}


def notify_human_reviewer(input):
    document, validation = input["document"], input["analysis"]
    category = validation.get("analysis", {}).get("category", "general")
    reviewer = REVIEWERS.get(category, "operations-review@example.com")
    reasons = validation.get("reasons", [])
    text = (f"[human-review] {document.get('url')} from {document.get('user_id', 'anonymous')} "
            f"-> {reviewer} (risk {validation.get('risk_score')}): {'; '.join(reasons) or 'no reason given'}")
    # With a REVIEW_WEBHOOK_URL secret (a Slack-style incoming webhook) the notice is posted
    # there through maestro.http; otherwise it is printed, and print() output is this step's log.
    hook = maestro.secrets.get("REVIEW_WEBHOOK_URL", None)
    delivered = False
    if hook:
        maestro.http.post(hook, json={"text": text, "reviewer": reviewer}, timeout=10).raise_for_status()
        delivered = True
    else:
        print(text)
    return {"notified": True, "queue": "human-review", "reviewer": reviewer, "reasons": reasons,
            "delivered": delivered}
