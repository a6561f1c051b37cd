"""`omnidesk serve`: the streaming engine behind the OpenAI Realtime protocol (GA event names).

`wire` holds what the server and the app's client share (formats, limits, codecs and the Omni Desk
extension events); `server` is the websocket front; `conversation` runs one connection's engine.
"""
