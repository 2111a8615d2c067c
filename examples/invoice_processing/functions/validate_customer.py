# Checks a customer id: valid ids are "CUST" followed by digits (e.g. CUST001).
# The real version would look the customer up in a CRM.

def validate_customer(input):
    customer_id = input["customer_id"]
    digits = customer_id[4:]
    reasons = []
    if not customer_id.startswith("CUST"):
        reasons.append("customer id must start with 'CUST'")
    elif not digits or not all(c in "0123456789" for c in digits):
        reasons.append("customer id must be 'CUST' followed by digits")
    invoice = input.get("invoice_data") or {}
    print(f"validating customer {customer_id} for invoice {invoice.get('number')}: "
          f"{'valid' if not reasons else 'invalid: ' + '; '.join(reasons)}")
    return {"customer_id": customer_id, "is_valid": not reasons, "reasons": reasons}
