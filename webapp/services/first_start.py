"""The first start: the first admin, and a demo application to back up and restore at once."""

import os
import random
import sqlite3

from flask import current_app

from ..models import Source, User
from ..security import generate_password
from .accounts import create_user
from .audit import SYSTEM
from .sources import create_source

DEMO_ROWS = 3000
DEMO_FILES = 300


def ensure_first_admin():
    """Create the first admin when there are no users; return the password if it was generated."""
    if User.query.first() is not None:
        return None
    password = current_app.config["ADMIN_PASSWORD"]
    generated = password is None
    if generated:
        password = generate_password()
    create_user(SYSTEM, current_app.config["ADMIN_USERNAME"], password, role="admin")
    return password if generated else None


def seed_demo():
    """On first start with no sources: a demo app (SQLite + uploads) registered as two sources."""
    if not current_app.config["SEED_DEMO"] or Source.query.first() is not None:
        return False
    root = os.path.join(current_app.config["DATA_DIR"], "demo")
    db_path = os.path.join(root, "app.db")
    uploads = os.path.join(root, "uploads")
    build_demo_database(db_path)
    build_demo_uploads(uploads)
    create_source(SYSTEM, {"name": "demo-db", "kind": "sqlite", "path": db_path})
    create_source(SYSTEM, {"name": "demo-uploads", "kind": "files", "path": uploads, "exclude": ["*.tmp"]})
    return True


def build_demo_database(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = random.Random(7)
    con = sqlite3.connect(path)
    with con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS customers(id INTEGER PRIMARY KEY, name TEXT, email TEXT, city TEXT)")
        con.execute("CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, customer_id INTEGER "
                    "REFERENCES customers(id), total_cents INTEGER, status TEXT, created_at TEXT)")
        con.executemany("INSERT OR IGNORE INTO customers VALUES (?,?,?,?)", (
            (i, f"Customer {i}", f"customer{i}@example.com", rng.choice(["Berlin", "Lyon", "Osaka", "上海", "Austin"]))
            for i in range(1, DEMO_ROWS // 3 + 1)))
        con.executemany("INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?)", (
            (i, rng.randint(1, DEMO_ROWS // 3), rng.randint(100, 90000), rng.choice(["paid", "shipped", "refunded"]),
             f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}") for i in range(1, DEMO_ROWS + 1)))
    con.close()


def build_demo_uploads(root):
    rng = random.Random(11)
    for i in range(DEMO_FILES):
        folder = os.path.join(root, f"{2024 + i % 3}", f"{i % 12 + 1:02d}")
        os.makedirs(folder, exist_ok=True)
        ext = rng.choice([".jpg", ".pdf", ".txt"])
        with open(os.path.join(folder, f"upload_{i:04d}{ext}"), "wb") as f:
            f.write(rng.randbytes(rng.randint(200, 40_000)) if ext != ".txt" else
                    (f"note {i}\n" * rng.randint(1, 400)).encode())
