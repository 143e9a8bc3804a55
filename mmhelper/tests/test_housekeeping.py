"""Housekeeping: e-mail counts only when the SMTP server answers."""


def test_email_counts_only_when_the_smtp_server_answers(mmhelper):
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def greet():
        conn, _ = server.accept()
        conn.sendall(b"220 test ESMTP\r\n")
        conn.close()

    threading.Thread(target=greet, daemon=True).start()
    settings = {"EmailSettings": {"SMTPServer": "127.0.0.1", "SMTPPort": str(port), "ConnectionSecurity": ""}}
    assert mmhelper.smtp_answers(settings) is True
    server.close()
    assert mmhelper.smtp_answers(settings, timeout=1) is False  # nothing listens any more
    assert mmhelper.smtp_answers({"EmailSettings": {"SMTPServer": ""}}) is False
