"""The row counter fed in pieces of any size, as a backup feeds it the spool: the same counts as
the whole file read at once, whatever the piece boundaries cut (a row's "\\n(", a LOCK TABLES
line, a quoted string)."""

import random

import pytest

from webapp.backup.sql_dump_rows import RowCounter

DUMP = (b"-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n"
        b"CREATE TABLE `a` (x int);\n"
        b"LOCK TABLES `a` WRITE;\n"
        b"INSERT INTO `a` VALUES (1,'x),(y'),\n(2,'\\n('),\n(3,NULL);\n"
        b"UNLOCK TABLES;\n"
        b"CREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW INSERT INTO `b` VALUES (9);\n"
        b"LOCK TABLES `b``q` WRITE;\n"
        b"INSERT INTO `b``q` VALUES (1,'it''s'),(2,'),('),(3,0xFF);\n"
        b"INSERT INTO `b``q` VALUES (4,'a');\n"
        b"UNLOCK TABLES;\n"
        b"LOCK TABLES `empty` WRITE;\nUNLOCK TABLES;\n"
        b"-- Dump completed\n")
EXPECTED = {"a": 3, "b`q": 4, "empty": 0}


def counted(pieces):
    counter = RowCounter(["empty"])
    for piece in pieces:
        counter.feed(piece)
    return counter.finish()


def test_the_whole_dump_at_once():
    assert counted([DUMP]) == EXPECTED


@pytest.mark.parametrize("seed", range(40))
def test_any_cut_into_pieces_counts_the_same(seed):
    rng = random.Random(seed)
    pieces, position = [], 0
    while position < len(DUMP):
        size = rng.choice([1, 2, 3, 5, 8, 13, 40, 200])
        pieces.append(DUMP[position:position + size])
        position += size
    assert counted(pieces) == EXPECTED


def test_every_single_cut_counts_the_same():
    for cut in range(1, len(DUMP)):
        assert counted([DUMP[:cut], DUMP[cut:]]) == EXPECTED, cut
