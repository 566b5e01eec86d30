"""Bad input against the API behind the web app: each gets a clear reason and a 4xx, never a 500, and never
another tenant's data. Run against a started `serve_harness.Server` by web_app_test.py."""

PHOTO_OF_NOBODY = "0" * 64


def reasons(answer):
    return " ".join(r["message"] for r in answer.get("reasons", [])) if isinstance(answer, dict) else ""


def expect(server, method, path, status, code=None, **kwargs):
    got, answer = server.api(method, path, **kwargs)
    assert got == status, f"{method} {path}: {got} {answer!r}, expected {status}"
    if code is not None:
        codes = [r["code"] for r in answer["reasons"]]
        assert code in codes, f"{method} {path}: {codes}, expected {code}"
        assert reasons(answer), f"{method} {path}: no message"
    return answer


def check_credentials(server):
    for token in (None, "me:stale-secret", "nobody:secret", "not a token"):
        for path in ("/v1/me", "/v1/library", "/v1/people", "/v1/photos", "/v1/generations"):
            expect(server, "GET", path, 401, token=token)


def check_imports(server, token):
    # A folder outside the operator's list, a path climbing out of it, a file, and nothing at all.
    outside = server.work / "outside"
    escape = server.photos / "library" / ".." / ".." / "outside"
    answer = expect(server, "POST", "/v1/imports", 403, "import_not_allowed", token=token,
                    body={"path": str(outside)})
    assert str(outside) in reasons(answer)
    expect(server, "POST", "/v1/imports", 403, "import_not_allowed", token=token, body={"path": str(escape)})
    expect(server, "POST", "/v1/imports", 403, "import_not_allowed", token=token, body={"path": "/"})
    # Outside the roots, existing or not, the answer is the same: it never tells what exists.
    expect(server, "POST", "/v1/imports", 403, "import_not_allowed", token=token,
           body={"path": "/definitely/not/here"})
    hidden = server.photos / ".hidden"
    hidden.mkdir(exist_ok=True)
    expect(server, "POST", "/v1/imports", 403, "import_not_allowed", token=token, body={"path": str(hidden)})
    expect(server, "POST", "/v1/imports", 422, "no_such_folder", token=token,
           body={"path": str(server.photos / "missing")})
    expect(server, "POST", "/v1/imports", 422, "malformed_json", token=token, raw=b"{not json")
    expect(server, "GET", "/v1/imports/0123456789abcdef", 404, "not_found", token=token)


def oversized_upload(server, token, limit, chunked):
    """Sends an upload larger than the limit the way a client would (declared, or chunked without a
    length) and returns the status line and body of the answer; the server may stop reading early."""
    import socket

    head = [f"POST /v1/uploads?name=huge.jpg HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
            f"Authorization: Bearer {token}", "Connection: close"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {limit + 1}")
    chunk = b"\xff" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        try:
            while sent <= limit:
                piece = chunk[: min(len(chunk), limit + 1 - sent)] or chunk[:1]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest: that is allowed
        answer = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, socket.timeout):
            pass
    status_line, _, rest = answer.partition(b"\r\n")
    return status_line.decode(errors="replace"), rest.decode(errors="replace")


def check_uploads(server, token, limit):
    for chunked in (False, True):
        status, body = oversized_upload(server, token, limit, chunked)
        assert " 413 " in status, f"oversized upload (chunked={chunked}): {status} {body[-300:]}"
        assert "too_large" in body and "MiB" in body, body[-300:]
    expect(server, "POST", "/v1/uploads?name=notes.jpg", 422, "not_imported", token=token,
           raw=b"this is not a picture")
    expect(server, "POST", "/v1/uploads", 422, "empty_upload", token=token, raw=b"")


def check_text_fields(server, token):
    # Markup is accepted as text where text is allowed (the app shows it escaped) and refused where the
    # field has rules; control characters are refused.
    expect(server, "PUT", "/v1/people/999999/name", 404, token=token, body={"name": "<b>x</b>"})
    expect(server, "PUT", "/v1/people/0/name", 422, "invalid_field", token=token, body={"name": "a\u0007b"})
    expect(server, "PUT", "/v1/people/0/name", 422, "invalid_field", token=token, body={"name": "   "})
    expect(server, "PUT", "/v1/people/0/name", 422, "malformed_json", token=token, raw=b"[]")
    expect(server, "PUT", "/v1/people/not-a-number/name", 404, "not_found", token=token, body={"name": "x"})
    answer = expect(server, "POST", "/v1/resolve", 200, token=token,
                    body={"prompt": "<script>alert(1)</script> at sunset"})
    assert isinstance(answer["references"], list)
    expect(server, "POST", "/v1/resolve", 422, "invalid_field", token=token, body={"prompt": "x" * 5000})
    album = {"schema_version": 1, "tenant": "me", "prompt": "", "n": 1, "priority": "batch",
             "kind": "album_to_art",
             "album_to_art": {"album": "<img src=x onerror=alert(1)>", "style": "pencil", "limit": 2,
                              "to": "x"}}
    expect(server, "POST", "/v1/generations", 422, token=token, body=album,
           headers={"Idempotency-Key": "album-markup"})


def check_photos(server, token):
    expect(server, "GET", "/v1/photos/not-a-photo/thumbnail", 400, "invalid_photo_id", token=token)
    expect(server, "GET", f"/v1/photos/{PHOTO_OF_NOBODY}/thumbnail", 404, "not_found", token=token)
    expect(server, "GET", f"/v1/photos/{PHOTO_OF_NOBODY}/face?box=1,2", 400, "invalid_field", token=token)
    expect(server, "GET", "/v1/outputs/tenants/me/tenant.json", 404, "not_found", token=token)
    expect(server, "GET", "/v1/outputs/tenants/me/results/../tenant.json", 404, token=token)
    expect(server, "GET", "/v1/outputs/tenants/me/results/%00.png", 404, token=token)
    expect(server, "GET", f"/v1/photos/{PHOTO_OF_NOBODY}/thumbnail?size=big", 400, "invalid_query", token=token)
    expect(server, "GET", "/v1/photos?limit=many", 400, "invalid_query", token=token)
    expect(server, "GET", "/v1/generations?limit=-1", 400, "invalid_query", token=token)


def check_other_tenant(server, owner_token, other_token, request_id):
    """The other tenant sees nothing of the owner's, whichever id it guesses."""
    status, photos = server.api("GET", "/v1/photos?limit=1", token=owner_token)
    assert status == 200 and photos["photos"], "the owner has photos"
    photo = photos["photos"][0]["id"]
    status, generation = server.api("GET", f"/v1/generations/{request_id}", token=owner_token)
    assert status == 200
    output = next(key for job in generation["jobs"] for key in job["outputs"] if key.endswith(".png"))
    expect(server, "GET", f"/v1/generations/{request_id}", 404, "not_found", token=other_token)
    expect(server, "GET", f"/v1/generations/{request_id}/events", 404, "not_found", token=other_token)
    expect(server, "DELETE", f"/v1/generations/{request_id}", 404, "not_found", token=other_token)
    expect(server, "GET", f"/v1/outputs/{output}", 404, "not_found", token=other_token)
    expect(server, "GET", f"/v1/photos/{photo}/thumbnail", 404, "not_found", token=other_token)
    expect(server, "GET", f"/v1/photos/{photo}/outputs", 200, token=other_token)
    assert server.api("GET", f"/v1/photos/{photo}/outputs", token=other_token)[1] == []
    assert server.api("GET", "/v1/people", token=other_token)[1] == []
    assert server.api("GET", "/v1/generations", token=other_token)[1] == []
    assert server.api("GET", "/v1/library", token=other_token)[1]["photos"] == 0
    refine = {"schema_version": 1, "tenant": "other", "prompt": "again", "n": 1, "priority": "interactive",
              "kind": "generate"}
    expect(server, "POST", f"/v1/generations/{request_id}/refine", 404, "not_found", token=other_token,
           body=refine, headers={"Idempotency-Key": "steal"})


def run_before_import(server, token):
    check_credentials(server)
    check_imports(server, token)
    status, me = server.api("GET", "/v1/me", token=token)
    assert status == 200, me
    check_uploads(server, token, me["max_upload_bytes"])
    check_text_fields(server, token)
    check_photos(server, token)
