"""The function's work, apart from the component's export so the tests run
it in plain Python: says how many bytes of what arrived, with the
`greeting` parameter (default `hello`), and refuses parameters it does not
know."""


def greet(body: bytes, content_type: str, params: list[tuple[str, str]]) -> bytes:
    greeting = "hello"
    for key, value in params:
        if key != "greeting":
            raise ValueError(f"unknown parameter `{key}`; this function takes `greeting`")
        greeting = value
    kind = content_type if content_type else "unknown type"
    return f"{greeting}: {len(body)} bytes of {kind}\n".encode()
