"""The S3 client's signature against AWS's own documented example (Signature Version 4,
"Example: GET Object" in the S3 API reference), and its request shapes."""

import datetime

from mmhelper.parts import s3


def test_signature_matches_aws_documented_example():
    # https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html (GET Object, Range)
    headers = s3.sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, {"Range": "bytes=0-9"},
                      s3.EMPTY_SHA256, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                      "us-east-1", now=datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC))
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_listing_query_is_canonical():
    assert s3.canonical_query({"prefix": "data/a b", "list-type": "2"}) == "list-type=2&prefix=data%2Fa%20b"
    assert s3.quote_path("/bucket/20261130/teams/x/Grüße #1+2.txt") == \
        "/bucket/20261130/teams/x/Gr%C3%BC%C3%9Fe%20%231%2B2.txt"
