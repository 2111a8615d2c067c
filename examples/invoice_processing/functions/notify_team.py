# Sends a notice to the invoices channel. The real version would post to chat;
# here the message is printed (print() output is kept as this step's log).

def notify_team(input):
    message = input["message"]
    print(f"[#invoices] {message}")
    return {"sent": True, "channel": "#invoices", "message": message}
