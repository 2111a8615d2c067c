"""The FastAPI peer of `maestro bench --peers`: an unsandboxed server that exec()s the code
in its own process, as a home-grown service would. It isolates nothing and records nothing.

    POST /functions {name, code}          define (one shared namespace: bare-name calls work)
    POST /functions/{name}/invoke <json>  -> {"status": "succeeded", "output": ...}

Prints "peer listening on http://127.0.0.1:PORT" once ready (one uvicorn worker).
"""
import json
import socket

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

app = FastAPI()
namespace: dict = {}


@app.post("/functions")
async def define(request: Request):
    body = await request.json()
    exec(body["code"], namespace)
    return JSONResponse({}, status_code=201)


@app.post("/functions/{name}/invoke")
async def invoke(name: str, request: Request):
    try:
        out = namespace[name](json.loads(await request.body() or b"null"))
    except Exception as e:  # the peer answers the failure, as Maestro would
        return JSONResponse({"status": "failed", "error": repr(e)}, status_code=500)
    return Response(json.dumps({"status": "succeeded", "output": out}), media_type="application/json")


if __name__ == "__main__":
    # IPPROTO_TCP named, so asyncio sets TCP_NODELAY on each connection (with proto 0 it
    # does not, and every keep-alive answer waits ~40 ms on Nagle and a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"peer listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
