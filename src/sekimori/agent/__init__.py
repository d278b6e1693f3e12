"""The agent: collectors, durable outbox, channel to the server.

Never imports sekimori.server, never opens a listening socket.
"""
