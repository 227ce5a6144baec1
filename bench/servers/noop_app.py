"""HTTP ceiling: a no-op ASGI endpoint on uvicorn (httptools + uvloop), 2 workers.

It reads the request body and answers a constant JSON list without touching a model.
uvicorn --app-dir bench/servers noop_app:app --workers 2 --no-access-log
"""

BODY = b"[0]"
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"3")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
