"""Name and label syntax, with Kubernetes' own error texts (apimachinery util/validation).

Each check returns a list of problems (empty when valid), worded exactly like Kubernetes so a
user who searches the message finds the Kubernetes documentation for it.
"""

from __future__ import annotations

import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(f"^{_DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + r"(\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME = re.compile(f"^{_QNAME_FMT}$")
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_IANA_SVC = re.compile("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_IANA_SVC_LETTER = re.compile("[a-z]")
_C_IDENT = re.compile("^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_VAR = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    ex = ",  or ".join(f"'{e}'" for e in examples)
    return f"{msg} (e.g. {ex}, regex used for validation is '{fmt}')"


def dns1123_label(value: str) -> list[str]:
    """Names of namespaces, nodes... and of Services (Kubernetes uses DNS-1035 there; we are
    as strict as DNS-1123 labels, which every existing Service name already is)."""
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character",
            _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    """Names of pods, replication controllers, nodes (dots allowed, up to 253 characters)."""
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(_regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character",
            _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def path_segment(value: str) -> list[str]:
    """kube's path.IsValidPathSegmentName: what RBAC names must be (`system:basic-user` is one)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in value]


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: `[prefix/]name`, prefix a DNS-1123 subdomain."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in dns1123_subdomain(prefix))
    else:
        return [_regex_error(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character", _QNAME_FMT,
            "MyName", "my.name", "123-abc") + " with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append("name part " + _max_len(QUALIFIED_NAME_MAX))
    if name and not _QNAME.match(name):
        errs.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character", _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(_max_len(LABEL_VALUE_MAX))
    if not _LABEL_VALUE.match(value):
        errs.append(_regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character",
            _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def iana_svc_name(value: str) -> list[str]:
    """Port names: at most 15 characters, lower-case letters, digits and '-', at least one letter,
    no '--', not starting or ending with '-'."""
    errs = []
    if len(value) > 15:
        errs.append(_max_len(15))
    if not _IANA_SVC.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not _IANA_SVC_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    return errs


def env_var_name(value: str) -> list[str]:
    if _ENV_VAR.match(value):
        return []
    return [_regex_error(
        "a valid environment variable name must consist of alphabetic characters, digits, '_', "
        "'-', or '.', and must not start with a digit", "[-._a-zA-Z][-._a-zA-Z0-9]*",
        "my.env-name", "MY_ENV.NAME", "MyEnvName1")]


def c_identifier(value: str) -> bool:
    return bool(_C_IDENT.match(value))
