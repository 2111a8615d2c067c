# Agent 1: Document Fetcher.
# Downloads input["url"] through maestro.http (the host makes the request under the
# tenant's egress policy). Without a rule allowing the URL (the default), or when the
# caller sends input["content"], it does not reach out: it uses the content, or
# synthesises a document from the URL (the same URL always gives the same text).
import maestro

KNOWN_TYPES = {"pdf", "txt", "doc", "docx", "html", "md", "csv", "json", "xml", "eml"}


def _url_seed(url):
    # A small deterministic number derived from the URL's characters.
    return sum((i + 1) * ord(c) for i, c in enumerate(url))


def _synthesise(url):
    seed = _url_seed(url)
    if "invoice" in url.lower():
        cents = 10000 + (seed * 7919) % 990000  # $100.00 .. $9,999.99
        return (
            f"Invoice Number: INV-{1000 + seed % 9000}\n"
            f"Date: 2024-01-{1 + seed % 28:02d}\n"
            "From: Example Supplies Ltd <billing@example.com>\n"
            "Bill To: Example Customer\n"
            f"Total: ${cents // 100:,}.{cents % 100:02d}\n"
            "Payment due within 30 days. Thank you for your business!\n"
        )
    return (
        "Dear customer,\n\n"
        f"This is the document published at {url}.\n"
        "Please contact info@example.com with any questions.\n\n"
        "Kind regards,\nExample Corp\n"
    )


def fetch_document(input):
    url = input["url"]
    content = input.get("content")
    fetched = False
    if content is None:
        if not url:
            raise ValueError("fetch_document needs a 'url' or a 'content'")
        try:
            r = maestro.http.get(url, timeout=10).raise_for_status()
            content, fetched = r.text, True
        except maestro.http.EgressDenied:
            content = _synthesise(url)
    # "type" comes from the extension of the URL's last path segment.
    last = url.split("#")[0].split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    ext = last.rsplit(".", 1)[-1].lower() if "." in last else ""
    ext = "html" if ext == "htm" else ext
    return {
        "url": url,
        "content": content,
        "type": ext if ext in KNOWN_TYPES else "txt",
        "size": len(content),
        "fetched": fetched,
    }
