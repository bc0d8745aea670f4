"""PII redactors side by side on a labelled synthetic set: recall and precision per kind,
and throughput.

The set is made here, deterministically from ``--seed``: Chinese and English sentences with
known spans of resident ID numbers (valid check digits), phone numbers (Chinese mobiles and
international numbers), emails, bank cards (Luhn-valid), IPv4/IPv6 addresses and person
names, plus decoys that must not be redacted (IDs and cards with a wrong check digit, order
numbers, versions, capitalized places, months and products, Chinese place names).

Candidates: ``patterns`` (checked regexes and libphonenumber, no names), ``patterns+names``
(the same with jieba's person tag and census names: dsdeploy's redactor) and ``presidio``
(presidio-analyzer's pattern recognizers, no spaCy model, plus the same resident-ID check,
which Presidio lacks). A found span counts when it overlaps a labelled span of its kind.

    python benchmarks/redactor.py [--items 600] [--seed 7] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsdeploy.security.redact import (
    ID_CHECK,
    ID_WEIGHTS,
    KINDS,
    PATTERNS,
    ChineseNames,
    EnglishNames,
    Phones,
    Redactor,
    Span,
    luhn_valid,
    merged,
)

RESULTS = Path(__file__).parent / "results"

CN_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
CN_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国文斌宇浩凯晨欣怡"
    "子涵梓轩雨婷佳琪思远嘉豪志鹏海燕晓东"
)
EN_FIRST = [
    "James", "Mary", "Robert", "Patricia", "Michael", "Linda", "David", "Susan", "Sarah",
    "Daniel", "Karen", "Thomas", "Nancy", "Emily", "Kevin", "Laura", "Brian", "Rachel",
    "Priya", "Oluwaseun", "Hiroshi", "Aisha", "Mateo", "Ingrid", "Dmitri", "Fatima",
]  # fmt: skip
EN_LAST = [
    "Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Moore",
    "Taylor", "Anderson", "Thompson", "Clark", "Lewis", "Walker", "Young", "Hughes", "Foster",
    "Raman", "Adeyemi", "Tanaka", "Khan", "Fernandez", "Lindqvist", "Volkov", "Okafor",
]  # fmt: skip
PHONE_REGIONS = ["US", "GB", "DE", "FR", "JP", "IN", "AU", "BR", "SG", "CA"]

ZH_TEMPLATES = [
    "请联系{name}，电话{phone}。",
    "客户{name}的身份证号是{id}，请核实。",
    "我的邮箱是{email}，有问题发邮件给我。",
    "退款请打到这张卡：{card}，户名{name}。",
    "服务器{ip}昨晚宕机了，{name}正在排查。",
    "{name}和{name2}明天去上海开会。",
    "把报告发到{email}，抄送{name}。",
    "订单号{order}已发货，预计周三到达北京。",
    "版本{version}修复了登录问题，请在杭州机房部署。",
    "身份证{badid}校验失败，请重新输入。",
    "紧急联系人：{name}，手机{phone}，身份证{id}。",
    "今天天气很好，我们去西湖散步吧。",
]
EN_TEMPLATES = [
    "Please call {name} at {phone} before Friday.",
    "My email is {email}; reply there, not to the office.",
    "Charge the card {card} for the March invoice.",
    "The request came from {ip} and was blocked.",
    "{name} asked me to forward this to {name2}.",
    "Invoice {order} was paid on Monday in Paris.",
    "Upgrade to version {version} before the Apple event in May.",
    "The card number {badcard} was declined.",
    "Dear Dr. {last}, your appointment is confirmed.",
    "Contact: {name}, {email}, {phone}.",
    "The meeting in New York moved to Tuesday afternoon.",
    "Our Hong Kong office uses Microsoft Teams and Google Docs.",
    "Summarize the attached report for the Sales team.",
]


def resident_id(rng: random.Random) -> str:
    body = f"{rng.choice([110101, 310104, 440305, 510107])}{rng.randint(1960, 2005)}"
    body += f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    total = sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True))
    return body + ID_CHECK[total % 11]


def bad_resident_id(rng: random.Random) -> str:
    good = resident_id(rng)
    wrong = ID_CHECK[(ID_CHECK.index(good[-1]) + 1) % 11]
    return good[:-1] + wrong


def card(rng: random.Random) -> str:
    while True:
        digits = rng.choice(["4", "5", "62"]) + "".join(rng.choices("0123456789", k=15))
        digits = digits[:16]
        if luhn_valid(digits):
            groups = [digits[i : i + 4] for i in range(0, 16, 4)]
            return rng.choice([" ", "-", ""]).join(groups)


def bad_card(rng: random.Random) -> str:
    while True:
        digits = "4" + "".join(rng.choices("0123456789", k=15))
        if not luhn_valid(digits):
            return digits


def phone(rng: random.Random) -> str:
    import phonenumbers

    if rng.random() < 0.5:
        number = f"1{rng.choice('3456789')}{rng.randint(0, 999999999):09d}"
        return rng.choice(["", "+86 ", "+86-"]) + number
    region = rng.choice(PHONE_REGIONS)
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = str(example.national_number)
    for _ in range(50):  # vary the last digits while the number stays valid
        candidate = national[:-4] + f"{rng.randint(0, 9999):04d}"
        parsed = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def email(rng: random.Random) -> str:
    user = rng.choice(["li.na", "wang_wei", "john.smith", "ops", "k.tanaka", "priya+bills"])
    domain = rng.choice(["example.com", "qq.com", "corp.example.cn", "mail.co.uk"])
    return f"{user}{rng.randint(1, 99)}@{domain}"


def ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(1, 65535):x}" for _ in range(6)]
    return "2001:db8:" + (":".join(groups) if rng.random() < 0.5 else ":" + ":".join(groups[:2]))


def cn_name(rng: random.Random) -> str:
    return rng.choice(CN_SURNAMES) + "".join(rng.choices(CN_GIVEN, k=rng.choice([1, 2])))


@dataclass
class Item:
    text: str
    spans: list[Span] = field(default_factory=list)


def fill(template: str, values: dict[str, tuple[str, str | None]]) -> Item:
    """The template with its fields replaced, and the spans of the ones that are PII."""
    item = Item("")
    rest = template
    while "{" in rest:
        before, _, after = rest.partition("{")
        key, _, rest = after.partition("}")
        item.text += before
        value, kind = values[key]
        if kind is not None:
            item.spans.append(Span(len(item.text), len(item.text) + len(value), kind))
        item.text += value
    item.text += rest
    return item


def make_set(count: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    items = []
    for index in range(count):
        chinese = index % 2 == 0
        first, last = rng.choice(EN_FIRST), rng.choice(EN_LAST)
        other = f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
        values: dict[str, tuple[str, str | None]] = {
            "name": (cn_name(rng) if chinese else f"{first} {last}", "name"),
            "name2": (cn_name(rng) if chinese else other, "name"),
            "last": (last, "name"),
            "phone": (phone(rng), "phone"),
            "id": (resident_id(rng), "id"),
            "email": (email(rng), "email"),
            "card": (card(rng), "card"),
            "ip": (ip(rng), "ip"),
            "order": (f"{rng.randint(10**17, 10**18 - 1)}", None),
            "version": (f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}", None),
            "badid": (bad_resident_id(rng), None),
            "badcard": (bad_card(rng), None),
        }  # fmt: skip
        items.append(fill(rng.choice(ZH_TEMPLATES if chinese else EN_TEMPLATES), values))
    return items


def presidio_finder() -> Callable[[str], Iterable[Span]] | None:
    try:
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IpRecognizer,
            PhoneRecognizer,
        )
    except ImportError:
        return None
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)  # no network: bundled list
    recognizers = {
        "email": EmailRecognizer(),
        "card": CreditCardRecognizer(),
        "ip": IpRecognizer(),
        "phone": PhoneRecognizer(supported_regions=("CN", *PHONE_REGIONS)),
    }
    kinds = {"EMAIL_ADDRESS": "email", "CREDIT_CARD": "card", "IP_ADDRESS": "ip"}
    resident = PATTERNS[0]

    def find(text: str) -> Iterable[Span]:
        yield from resident.find(text)
        for recognizer in recognizers.values():
            for hit in recognizer.analyze(text, recognizer.supported_entities, None):
                yield Span(hit.start, hit.end, kinds.get(hit.entity_type, "phone"))

    return find


def candidates() -> dict[str, Callable[[str], list[Span]]]:
    base = [*PATTERNS, Phones()]
    found: dict[str, Callable[[str], list[Span]]] = {
        "patterns": Redactor(base).spans,
        "patterns+names": Redactor([*base, ChineseNames(), EnglishNames()]).spans,
    }
    presidio = presidio_finder()
    if presidio is not None:
        found["presidio"] = lambda text: merged(presidio(text))
    return found


def overlaps(a: Span, b: Span) -> bool:
    return a.kind == b.kind and a.start < b.end and b.start < a.end


def score(items: list[Item], found: list[list[Span]]) -> dict[str, dict[str, float]]:
    table = {}
    for kind in KINDS:
        gold = [(i, s) for i, item in enumerate(items) for s in item.spans if s.kind == kind]
        pred = [(i, s) for i, spans in enumerate(found) for s in spans if s.kind == kind]
        hit = sum(any(overlaps(s, p) for p in found[i]) for i, s in gold)
        right = sum(any(overlaps(p, s) for s in items[i].spans) for i, p in pred)
        table[kind] = {
            "gold": len(gold),
            "found": len(pred),
            "recall": hit / len(gold) if gold else 1.0,
            "precision": right / len(pred) if pred else 1.0,
        }
    return table


def measure(name: str, spans_of: Callable[[str], list[Span]], items: list[Item]) -> dict[str, Any]:
    spans_of(items[0].text)  # warm-up: dictionaries load on first use
    start = time.perf_counter()
    found = [spans_of(item.text) for item in items]
    elapsed = time.perf_counter() - start
    size = sum(len(item.text.encode()) for item in items)
    return {
        "candidate": name,
        "items_per_s": len(items) / elapsed,
        "mb_per_s": size / elapsed / 1e6,
        "kinds": score(items, found),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'candidate':16} {'items/s':>9} {'MB/s':>6}  " + "  ".join(f"{k:>11}" for k in KINDS))
    print(f"{'':16} {'':>9} {'':>6}  " + "  ".join(f"{'R/P':>11}" for _ in KINDS))
    for row in rows:
        cells = "  ".join(
            f"{row['kinds'][k]['recall']:.2f}/{row['kinds'][k]['precision']:.2f}".rjust(11)
            for k in KINDS
        )
        print(f"{row['candidate']:16} {row['items_per_s']:9.0f} {row['mb_per_s']:6.2f}  {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="120 items: checks it still runs")
    args = parser.parse_args(argv)
    items = make_set(120 if args.quick else args.items, args.seed)
    rows = [measure(name, spans_of, items) for name, spans_of in candidates().items()]
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("redactor.quick.json" if args.quick else "redactor.json")
    gold = {kind: sum(s.kind == kind for item in items for s in item.spans) for kind in KINDS}
    out.write_text(
        json.dumps({"items": len(items), "seed": args.seed, "gold": gold, "rows": rows}, indent=2)
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
