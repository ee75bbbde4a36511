"""Generate the bundled example documents in this folder.

    python examples/make_examples.py

Every document is synthetic: fictitious people, companies and numbers, drawn with
Pillow. The output is deterministic (fixed seeds, no clock). Drawing needs a CJK
font: install ``fonts-noto-cjk`` (Debian/Ubuntu: ``apt-get install fonts-noto-cjk``)
or ``fonts-wqy-zenhei``. The generated PNG and PDF files are committed, so running
ocrflow on them never needs the font.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".local/share/fonts")

# ---------------------------------------------------------------------------
# The fictitious values printed on the documents (examples/README.md lists them).
# ---------------------------------------------------------------------------

ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]


def ric_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a PRC resident ID number."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def luhn_check_digit(partial: str) -> str:
    total = 0
    for i, c in enumerate(reversed(partial)):
        d = int(c)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def wrong_digit(right: str) -> str:
    """A check character that is certainly not the right one."""
    return "7" if right != "7" else "3"


# A man born 1990-03-07 in 110101 (东城区, Beijing); 17th digit 3 is odd = male.
ID_VALID_17 = "11010119900307123"
ID_VALID = ID_VALID_17 + ric_check_digit(ID_VALID_17)
# A woman born 1988-05-16 in 110105 (朝阳区, Beijing); 17th digit 6 is even = female.
# Birth date and sex agree with the number: only the check digit is wrong.
ID_BAD_17 = "11010519880516246"
ID_BAD = ID_BAD_17 + wrong_digit(ric_check_digit(ID_BAD_17))

CARD_VALID_15 = "622202123456789"
CARD_VALID = CARD_VALID_15 + luhn_check_digit(CARD_VALID_15)
CARD_BAD = CARD_VALID_15 + wrong_digit(luhn_check_digit(CARD_VALID_15))


def uscc_check_digit(first17: str) -> str:
    """Check character of a Unified Social Credit Code (GB 32100-2015)."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    total = sum(alphabet.index(c) * w for c, w in zip(first17, weights, strict=True))
    return alphabet[(31 - total % 31) % 31]


SELLER_TAX_ID = "91330106MA2H0ABC1" + uscc_check_digit("91330106MA2H0ABC1")
BUYER_TAX_ID = "91320105MA1Y2EXA3" + uscc_check_digit("91320105MA1Y2EXA3")


def group4(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


# ---------------------------------------------------------------------------
# Fonts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FontSpec:
    path: Path
    index: int


def _faces(path: Path):
    for index in range(16):
        try:
            font = ImageFont.truetype(str(path), 12, index=index)
        except OSError:
            return
        yield index, " ".join(font.getname())


def find_fonts() -> dict[str, FontSpec]:
    """Sans, bold and monospace CJK faces from Noto CJK, or WenQuanYi Zen Hei."""
    files = sorted(
        p
        for d in FONT_DIRS
        if d.is_dir()
        for p in d.rglob("*")
        if p.suffix.lower() in {".ttc", ".otf", ".ttf"}
    )
    wanted = {
        "sans": ("Noto Sans CJK SC Regular", "WenQuanYi Zen Hei Regular"),
        "bold": ("Noto Sans CJK SC Bold", "Noto Sans CJK SC Regular", "WenQuanYi Zen Hei Regular"),
        "mono": (
            "Noto Sans Mono CJK SC Regular",
            "WenQuanYi Zen Hei Mono Regular",
            "WenQuanYi Zen Hei Regular",
        ),
        "mono_bold": (
            "Noto Sans Mono CJK SC Bold",
            "Noto Sans Mono CJK SC Regular",
            "WenQuanYi Zen Hei Mono Regular",
        ),
    }
    names = {"Noto", "wqy", "WenQuanYi"}
    available: dict[str, FontSpec] = {}
    for path in files:
        if not any(n.lower() in path.name.lower() or n.lower() in str(path.parent).lower() for n in names):
            continue
        for index, name in _faces(path):
            available.setdefault(name, FontSpec(path, index))
    fonts: dict[str, FontSpec] = {}
    for role, choices in wanted.items():
        for choice in choices:
            if choice in available:
                fonts[role] = available[choice]
                break
    missing = [role for role in wanted if role not in fonts]
    if missing:
        sys.exit(
            "make_examples.py: no CJK font found under /usr/share/fonts "
            f"(missing faces for: {', '.join(missing)}).\n"
            "Install one, e.g. `apt-get update && apt-get install -y fonts-noto-cjk` "
            "(or fonts-wqy-zenhei), then run `python examples/make_examples.py` again."
        )
    return fonts


FONTS: dict[str, FontSpec] = {}


def font(role: str, size: int) -> ImageFont.FreeTypeFont:
    spec = FONTS[role]
    return ImageFont.truetype(str(spec.path), size, index=spec.index)


# ---------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------

INK = (20, 20, 20)


def text(draw: ImageDraw.ImageDraw, xy, s: str, f, fill=INK, spacing: int = 0, anchor: str = "la") -> int:
    """Draw ``s`` (optionally letter-spaced); return the x where it ends."""
    x, y = xy
    if not spacing:
        draw.text((x, y), s, font=f, fill=fill, anchor=anchor)
        return int(x + draw.textlength(s, font=f))
    for ch in s:
        draw.text((x, y), ch, font=f, fill=fill, anchor=anchor)
        x += draw.textlength(ch, font=f) + spacing
    return int(x - spacing)


def spaced_width(draw, s: str, f, spacing: int) -> float:
    return sum(draw.textlength(ch, font=f) for ch in s) + spacing * (len(s) - 1)


def tinted_card(size, page, top, bottom, border, radius, seed, waves=True, margin=28):
    """A card on a light page: vertical tint gradient, faint guilloche waves, border, soft shadow."""
    w, h = size
    rng = random.Random(seed)
    img = Image.new("RGB", size, page)
    # soft shadow
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).rounded_rectangle(
        (margin + 6, margin + 8, w - margin + 6, h - margin + 8), radius, fill=70
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(9))
    img.paste(Image.new("RGB", size, (150, 150, 150)), (0, 0), shadow)
    # gradient body
    grad = Image.new("RGB", (1, h))
    for y in range(h):
        t = y / max(1, h - 1)
        grad.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    body = grad.resize(size)
    if waves:
        wd = ImageDraw.Draw(body)
        line = tuple(max(0, c - 14) for c in top)
        phase = rng.uniform(0, math.tau)
        for k in range(14):
            amp = 18 + 3 * k
            pts = [
                (x, h * 0.2 + k * h * 0.05 + amp * math.sin(x / (70 + 4 * k) + phase + k * 0.5))
                for x in range(0, w, 6)
            ]
            wd.line(pts, fill=line, width=1)
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((margin, margin, w - margin, h - margin), radius, fill=255)
    img.paste(body, (0, 0), mask)
    ImageDraw.Draw(img).rounded_rectangle(
        (margin, margin, w - margin, h - margin), radius, outline=border, width=3
    )
    return img


def pseudo_qr(draw, x, y, cells, cell, seed, fill=INK):
    """A QR-looking block of modules (not a real code) with three finder patterns."""
    rng = random.Random(seed)
    for r in range(cells):
        for c in range(cells):
            if rng.random() < 0.48:
                draw.rectangle(
                    (x + c * cell, y + r * cell, x + (c + 1) * cell - 1, y + (r + 1) * cell - 1), fill=fill
                )
    for fx, fy in ((0, 0), (cells - 7, 0), (0, cells - 7)):
        ox, oy = x + fx * cell, y + fy * cell
        draw.rectangle((ox - cell, oy - cell, ox + 8 * cell - 1, oy + 8 * cell - 1), fill=(255, 255, 255))
        draw.rectangle((ox, oy, ox + 7 * cell - 1, oy + 7 * cell - 1), fill=fill)
        draw.rectangle((ox + cell, oy + cell, ox + 6 * cell - 1, oy + 6 * cell - 1), fill=(255, 255, 255))
        draw.rectangle((ox + 2 * cell, oy + 2 * cell, ox + 5 * cell - 1, oy + 5 * cell - 1), fill=fill)


def save_png(img: Image.Image, name: str, colors: int = 0) -> Path:
    path = HERE / name
    if colors:
        img = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(path, optimize=True)
    return path


# ---------------------------------------------------------------------------
# 1. Train ticket (classic blue CR ticket)
# ---------------------------------------------------------------------------

TICKET = {
    "ticket_number": "E012345678",
    "check_gate": "检票:12A",
    "train_number": "G7608",
    "departure_station": "杭州东站",
    "departure_pinyin": "Hangzhoudong",
    "arrival_station": "南京南站",
    "arrival_pinyin": "Nanjingnan",
    "departure": "2024年10月15日14:10开",
    "seat": "12车05F号",
    "price": "¥117.5元",
    "seat_class": "二等座",
    "id_masked": "3201061982****0417",
    "passenger": "张三",
    "serial": "10010300011015E012345 杭州东售",
}


def make_train_ticket() -> Path:
    t = TICKET
    w, h = 1400, 900
    img = tinted_card((w, h), (238, 238, 236), (214, 232, 246), (190, 216, 238), (120, 160, 200), 26, seed=11)
    d = ImageDraw.Draw(img)
    red = (200, 30, 30)
    d.text((90, 70), t["ticket_number"], font=font("bold", 50), fill=red)
    d.text((1010, 78), t["check_gate"], font=font("sans", 40), fill=INK)
    # stations and train number
    st = font("bold", 74)
    d.text((90, 170), t["departure_station"], font=st, fill=INK)
    d.text((w - 90, 170), t["arrival_station"], font=st, fill=INK, anchor="ra")
    d.text((w // 2, 178), t["train_number"], font=font("bold", 64), fill=INK, anchor="ma")
    ax, ay = w // 2, 268  # arrow under the train number
    d.line((ax - 110, ay, ax + 100, ay), fill=INK, width=5)
    d.polygon(((ax + 110, ay), (ax + 88, ay - 12), (ax + 88, ay + 12)), fill=INK)
    py = font("sans", 36)
    d.text((100, 286), t["departure_pinyin"], font=py, fill=INK)
    d.text((w - 100, 286), t["arrival_pinyin"], font=py, fill=INK, anchor="ra")
    # date/time and seat, price and class
    row = font("sans", 52)
    d.text((90, 380), t["departure"], font=row, fill=INK)
    d.text((880, 380), t["seat"], font=row, fill=INK)
    d.text((90, 470), t["price"], font=row, fill=INK)
    d.text((880, 470), t["seat_class"], font=row, fill=INK)
    d.text((90, 560), "限乘当日当次车", font=font("sans", 38), fill=INK)
    # masked ID and name
    # the font's asterisks sit high, like superscripts, and the text detector then cuts
    # the line in two at them; ticket printers centre them on the digits, so do we
    idf, x = font("sans", 52), 90
    for ch in f"{t['id_masked']} {t['passenger']}":
        d.text((x, 640 + (10 if ch == "*" else 0)), ch, font=idf, fill=INK)
        x += d.textlength(ch, font=idf)
    # notice box
    d.rectangle((90, 735, 900, 815), outline=INK, width=2)
    d.text((495, 775), "买票请到12306 发货请到95306", font=font("sans", 30), fill=INK, anchor="mm")
    d.text((495, 832), "中国铁路祝您旅途愉快", font=font("sans", 26), fill=INK, anchor="ma")
    pseudo_qr(d, 1040, 560, 25, 10, seed=12)
    d.text((w - 90, h - 72), t["serial"], font=font("sans", 24), fill=(60, 60, 60), anchor="ra")
    return save_png(img, "train_ticket_valid.png")


# ---------------------------------------------------------------------------
# 2-3. PRC resident ID card, front
# ---------------------------------------------------------------------------

ID_CARDS = {
    "cn_id_card_valid.png": {
        "name": "王小明",
        "sex": "男",
        "ethnicity": "汉",
        "birth": "1990年3月7日",
        "address": ["北京市东城区示例路88号", "示例小区3号楼2单元501室"],
        "id_number": ID_VALID,
        "seed": 21,
    },
    "cn_id_card_bad_checksum.png": {
        "name": "李小红",
        "sex": "女",
        "ethnicity": "汉",
        "birth": "1988年5月16日",
        "address": ["北京市朝阳区样例街12号院", "6号楼1803室"],
        "id_number": ID_BAD,
        "seed": 22,
    },
}


def make_id_card(filename: str, p: dict) -> Path:
    w, h = 1400, 884
    img = tinted_card(
        (w, h), (236, 236, 234), (238, 244, 240), (222, 234, 232), (150, 175, 175), 40, seed=p["seed"]
    )
    d = ImageDraw.Draw(img)
    label_c = (40, 90, 150)
    lab = font("sans", 40)
    val = font("sans", 48)
    x_lab, x_val = 110, 250
    d.text((x_lab, 130), "姓名", font=lab, fill=label_c)
    d.text((x_val, 124), p["name"], font=val, fill=INK)
    d.text((x_lab, 235), "性别", font=lab, fill=label_c)
    d.text((x_val, 229), p["sex"], font=val, fill=INK)
    d.text((520, 235), "民族", font=lab, fill=label_c)
    d.text((690, 229), p["ethnicity"], font=val, fill=INK)
    d.text((x_lab, 340), "出生", font=lab, fill=label_c)
    d.text((x_val, 334), p["birth"], font=val, fill=INK)
    d.text((x_lab, 445), "住址", font=lab, fill=label_c)
    for i, line in enumerate(p["address"]):
        d.text((x_val, 439 + i * 70), line, font=val, fill=INK)
    # photo placeholder
    d.rounded_rectangle((950, 120, 1270, 520), 12, fill=(205, 208, 210), outline=(180, 184, 186), width=2)
    # ID number
    d.text((x_lab, 690), "公民身份号码", font=lab, fill=label_c)
    text(d, (420, 676), p["id_number"], font("sans", 60), spacing=6)
    return save_png(img, filename)


# ---------------------------------------------------------------------------
# 4-5. Bank card
# ---------------------------------------------------------------------------

BANK_CARDS = {
    "bank_card_valid.png": {"number": CARD_VALID, "holder": "WANG XIAOMING", "seed": 41},
    "bank_card_bad_luhn.png": {"number": CARD_BAD, "holder": "LI XIAOHONG", "seed": 42},
}
BANK_NAME_CN = "中国工商银行"
BANK_NAME_EN = "ICBC"
CARD_EXPIRY = "09/28"


def make_bank_card(filename: str, p: dict) -> Path:
    w, h = 1400, 884
    img = tinted_card(
        (w, h), (234, 234, 232), (246, 238, 232), (226, 222, 226), (160, 150, 150), 44, seed=p["seed"]
    )
    d = ImageDraw.Draw(img)
    red = (180, 20, 30)
    # bank logo: a red ring with a square, then the name
    d.ellipse((100, 90, 190, 180), outline=red, width=10)
    d.rectangle((128, 118, 162, 152), outline=red, width=8)
    d.text((215, 92), f"{BANK_NAME_CN} {BANK_NAME_EN}", font=font("bold", 56), fill=red)
    d.text((w - 110, 110), "借记卡 DEBIT", font=font("sans", 36), fill=INK, anchor="ra")
    # chip
    d.rounded_rectangle((130, 300, 290, 420), 16, fill=(214, 182, 100), outline=(150, 120, 50), width=3)
    for yy in (340, 380):
        d.line((130, yy, 290, yy), fill=(150, 120, 50), width=2)
    d.line((210, 300, 210, 420), fill=(150, 120, 50), width=2)
    # number
    text(d, (120, 480), group4(p["number"]), font("mono_bold", 84), spacing=4)
    # validity
    d.text((560, 620), "VALID", font=font("sans", 24), fill=INK)
    d.text((560, 648), "THRU", font=font("sans", 24), fill=INK)
    d.text((650, 612), CARD_EXPIRY, font=font("mono", 52), fill=INK)
    # holder
    d.text((120, 730), p["holder"], font=font("mono", 52), fill=INK)
    # network mark
    for i, c in enumerate(((200, 30, 40), (20, 60, 140), (0, 120, 110))):
        d.polygon(
            ((1060 + i * 70, 660), (1140 + i * 70, 660), (1120 + i * 70, 790), (1040 + i * 70, 790)), fill=c
        )
    d.text((1175, 725), "银联", font=font("bold", 40), fill=(255, 255, 255), anchor="mm")
    return save_png(img, filename)


# ---------------------------------------------------------------------------
# 6. Malaysian retail receipts (SROIE style); 8. two of them as a PDF
# ---------------------------------------------------------------------------

RECEIPTS = [
    {
        "company": "XYZ TRADING SDN BHD",
        "reg": "(CO. REG. NO. 1234567-X)",
        "address": ["NO. 12, JALAN MAJU 3,", "TAMAN SRI,", "81100 JOHOR BAHRU, JOHOR."],
        "tel": "TEL: 07-355 1234",
        "doc": "CS00012345",
        "date": "25/12/2018",
        "time": "14:32",
        "cashier": "ADMIN",
        "items": [
            ("MINERAL WATER 500ML", 2, "1.20"),
            ("WHOLEMEAL BREAD", 1, "3.50"),
            ("EXERCISE BOOK A5", 1, "3.08"),
        ],
        "rounding": "0.02",
        "total": "9.00",
        "cash": "10.00",
        "change": "1.00",
        "seed": 61,
    },
    {
        "company": "ABC MINI MARKET SDN BHD",
        "reg": "(CO. REG. NO. 7654321-A)",
        "address": ["LOT 5, JALAN BUNGA RAYA,", "TAMAN BAHAGIA,", "47300 PETALING JAYA, SELANGOR."],
        "tel": "TEL: 03-7877 5566",
        "doc": "CS00067890",
        "date": "26/12/2018",
        "time": "09:05",
        "cashier": "SITI",
        "items": [("RICE 5KG", 1, "13.90"), ("FRESH MILK 1L", 1, "6.53"), ("EGGS GRADE A 10S", 1, "4.58")],
        "rounding": "-0.01",
        "total": "25.00",
        "cash": "50.00",
        "change": "25.00",
        "seed": 62,
    },
]


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}"


def make_receipt(p: dict) -> Image.Image:
    w, h = 1000, 1700
    img = tinted_card(
        (w, h),
        (228, 228, 226),
        (252, 251, 246),
        (246, 245, 238),
        (200, 200, 196),
        6,
        seed=p["seed"],
        waves=False,
        margin=40,
    )
    d = ImageDraw.Draw(img)
    mono = font("mono", 38)
    bold = font("mono_bold", 42)
    cx = w // 2
    y = 90
    d.text((cx, y), p["company"], font=bold, fill=INK, anchor="ma")
    y += 62
    for line in [p["reg"], *p["address"], p["tel"]]:
        d.text((cx, y), line, font=mono, fill=INK, anchor="ma")
        y += 52
    y += 14
    d.text((cx, y), "RECEIPT", font=bold, fill=INK, anchor="ma")
    y += 70
    left, right = 100, w - 100
    d.text((left, y), f"DOC NO: {p['doc']}", font=mono, fill=INK)
    y += 52
    d.text((left, y), f"DATE: {p['date']}", font=mono, fill=INK)
    d.text((right, y), f"TIME: {p['time']}", font=mono, fill=INK, anchor="ra")
    y += 52
    d.text((left, y), f"CASHIER: {p['cashier']}", font=mono, fill=INK)
    y += 60
    dash = "-" * 36
    d.text((cx, y), dash, font=mono, fill=INK, anchor="ma")
    y += 44
    d.text((left, y), "ITEM", font=mono, fill=INK)
    d.text((right, y), "AMOUNT", font=mono, fill=INK, anchor="ra")
    y += 44
    d.text((cx, y), dash, font=mono, fill=INK, anchor="ma")
    y += 52
    subtotal = 0
    for name, qty, price in p["items"]:
        cents = qty * round(float(price) * 100)
        subtotal += cents
        d.text((left, y), name, font=mono, fill=INK)
        y += 48
        d.text((left + 40, y), f"{qty} x {price}", font=mono, fill=INK)
        d.text((right, y), _money(cents), font=mono, fill=INK, anchor="ra")
        y += 56
    rounding = round(float(p["rounding"]) * 100)
    assert subtotal + rounding == round(float(p["total"]) * 100), p["company"]
    assert round(float(p["cash"]) * 100) - round(float(p["total"]) * 100) == round(float(p["change"]) * 100)
    d.text((cx, y), dash, font=mono, fill=INK, anchor="ma")
    y += 52
    rows = [
        ("SUB TOTAL:", _money(subtotal), mono),
        ("ROUNDING:", p["rounding"], mono),
        ("TOTAL:", p["total"], bold),
        ("CASH:", p["cash"], mono),
        ("CHANGE:", p["change"], mono),
    ]
    for label, value, f in rows:
        d.text((left + 260, y), label, font=f, fill=INK)
        d.text((right, y), value, font=f, fill=INK, anchor="ra")
        y += 56
    y += 30
    for line in ("THANK YOU. PLEASE COME AGAIN.", "GOODS SOLD ARE NOT RETURNABLE."):
        d.text((cx, y), line, font=mono, fill=INK, anchor="ma")
        y += 50
    assert y < h - 60, y
    return img


# ---------------------------------------------------------------------------
# 7. VAT general invoice (增值税普通发票)
# ---------------------------------------------------------------------------

INVOICE = {
    "title": "浙江增值税普通发票",
    "code": "033002400111",
    "number": "12345678",
    "date": "2024年05月20日",
    "check_code": "12345 67890 12345 67890",
    "machine": "661234567890",
    "buyer_name": "南京示例科技有限公司",
    "buyer_tax_id": BUYER_TAX_ID,
    "item": "*信息技术服务*软件维护服务",
    "unit": "次",
    "qty": "1",
    "unit_price": "1000.00",
    "amount": "1000.00",
    "rate": "13%",
    "tax": "130.00",
    "total_amount": "¥1,000.00",
    "total_tax": "¥130.00",
    "total_words": "壹仟壹佰叁拾圆整",
    "grand_total": "¥1,130.00",
    "seller_name": "杭州样例贸易有限公司",
    "seller_tax_id": SELLER_TAX_ID,
    "seller_address": "杭州市西湖区示例路1号 0571-12345678",
    "seller_bank": "示例银行杭州分行 1202000000000000001",
}


def make_invoice() -> Path:
    v = INVOICE
    w, h = 1600, 1100
    img = tinted_card(
        (w, h),
        (234, 234, 232),
        (250, 249, 242),
        (246, 244, 234),
        (190, 180, 160),
        6,
        seed=71,
        waves=False,
        margin=24,
    )
    d = ImageDraw.Draw(img)
    brown = (150, 70, 40)
    sans = font("sans", 30)
    small = font("sans", 26)
    big = font("sans", 34)
    # header
    pseudo_qr(d, 70, 60, 25, 6, seed=72)
    d.text((250, 80), f"机器编号: {v['machine']}", font=small, fill=INK)
    d.text((w // 2, 60), v["title"], font=font("bold", 52), fill=brown, anchor="ma")
    d.line((w // 2 - 250, 130, w // 2 + 250, 130), fill=brown, width=3)
    d.line((w // 2 - 250, 137, w // 2 + 250, 137), fill=brown, width=3)
    hx = 1080
    for i, (label, value) in enumerate(
        (("发票代码", v["code"]), ("发票号码", v["number"]), ("开票日期", v["date"]))
    ):
        d.text((hx, 60 + i * 46), f"{label}: {value}", font=big, fill=INK)
    d.text((hx, 60 + 3 * 46 + 4), f"校验码: {v['check_code']}", font=small, fill=INK)
    # frame: buyer | items | totals | total in words and figures | seller
    L, R = 60, w - 60
    rows_y = [270, 420, 650, 720, 790, 990]
    d.rectangle((L, rows_y[0], R, rows_y[-1]), outline=brown, width=3)
    for y in rows_y[1:-1]:
        d.line((L, y, R, y), fill=brown, width=2)
    bx = L + 24
    # buyer
    d.text((bx, rows_y[0] + 20), f"购买方名称: {v['buyer_name']}", font=sans, fill=INK)
    d.text((bx, rows_y[0] + 62), f"纳税人识别号: {v['buyer_tax_id']}", font=sans, fill=INK)
    d.text((bx, rows_y[0] + 104), "地址、电话:", font=sans, fill=INK)
    d.line((1080, rows_y[0], 1080, rows_y[1]), fill=brown, width=2)
    d.text((1100, rows_y[0] + 14), "密码区", font=small, fill=brown)
    rng = random.Random(73)
    for i in range(3):
        cipher = "".join(rng.choice("0123456789+-*/<>") for _ in range(28))
        d.text((1100, rows_y[0] + 50 + i * 32), cipher, font=font("mono", 24), fill=(80, 80, 80))
    # items table
    cols = [L, 520, 700, 790, 880, 1060, 1260, 1360, R]
    heads = ["货物或应税劳务、服务名称", "规格型号", "单位", "数量", "单价", "金额", "税率", "税额"]
    for x in cols[1:-1]:
        d.line((x, rows_y[1], x, rows_y[2]), fill=brown, width=1)
    hf = font("sans", 24)
    for i, head in enumerate(heads):
        d.text(((cols[i] + cols[i + 1]) // 2, rows_y[1] + 14), head, font=hf, fill=brown, anchor="ma")
    iy = rows_y[1] + 64
    cells = [v["item"], "", v["unit"], v["qty"], v["unit_price"], v["amount"], v["rate"], v["tax"]]
    for i, cell in enumerate(cells):
        if i == 0:
            d.text((cols[0] + 16, iy), cell, font=sans, fill=INK)
        elif cell:
            d.text((cols[i + 1] - 14, iy), cell, font=sans, fill=INK, anchor="ra")
    # totals: each amount on the line of its label
    ty = rows_y[2] + 16
    d.text((L + 16, ty), "合计金额", font=sans, fill=brown)
    d.text((L + 160, ty - 2), v["total_amount"], font=big, fill=INK)
    d.text((820, ty), "合计税额", font=sans, fill=brown)
    d.text((964, ty - 2), v["total_tax"], font=big, fill=INK)
    # total in words and figures
    gy = rows_y[3] + 16
    d.text((L + 16, gy), "价税合计(大写)", font=sans, fill=brown)
    d.text((L + 300, gy - 2), f"⊗{v['total_words']}", font=big, fill=INK)
    d.text((820, gy), "(小写)", font=sans, fill=brown)
    d.text((920, gy - 2), v["grand_total"], font=big, fill=INK)
    # seller
    for i, (label, value) in enumerate(
        (
            ("销售方名称", v["seller_name"]),
            ("纳税人识别号", v["seller_tax_id"]),
            ("地址、电话", v["seller_address"]),
            ("开户行及账号", v["seller_bank"]),
        )
    ):
        d.text((bx, rows_y[4] + 18 + i * 46), f"{label}: {value}", font=sans, fill=INK)
    d.line((1080, rows_y[4], 1080, rows_y[5]), fill=brown, width=2)
    d.text((1100, rows_y[4] + 20), "备注", font=small, fill=brown)
    # footer
    fy = rows_y[5] + 22
    for x, s in (
        (L + 20, "收款人: 赵一"),
        (440, "复核: 钱二"),
        (820, "开票人: 孙四"),
    ):
        d.text((x, fy), s, font=small, fill=INK)
    return save_png(img, "invoice_valid.png")


# ---------------------------------------------------------------------------


def main() -> None:
    FONTS.update(find_fonts())
    # the numbers must be what the README promises
    assert ID_VALID == "110101199003071233" and ID_BAD == "110105198805162467", (ID_VALID, ID_BAD)
    assert CARD_VALID == "6222021234567894" and CARD_BAD == "6222021234567897", (CARD_VALID, CARD_BAD)
    written = [make_train_ticket()]
    written += [make_id_card(name, p) for name, p in ID_CARDS.items()]
    written += [make_bank_card(name, p) for name, p in BANK_CARDS.items()]
    receipts = [make_receipt(p) for p in RECEIPTS]
    written.append(save_png(receipts[0], "receipt_valid.png"))
    written.append(make_invoice())
    pdf = HERE / "receipt_pages.pdf"
    pages = [r.convert("L") for r in receipts]
    fixed = time.gmtime(1545800000)  # 2018-12-26: a fixed date keeps the PDF byte-identical
    pages[0].save(
        pdf, save_all=True, append_images=pages[1:], resolution=150, creationDate=fixed, modDate=fixed
    )
    written.append(pdf)
    for path in written:
        print(f"{path.name:32} {path.stat().st_size / 1024:7.1f} KiB")


if __name__ == "__main__":
    main()
