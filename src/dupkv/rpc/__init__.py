"""The Pegasus wire protocol: Thrift IDL, THFT framing, asyncio transport."""
