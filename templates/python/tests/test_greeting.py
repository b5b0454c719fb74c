import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from greeting import greet  # noqa: E402


class GreetTest(unittest.TestCase):
    def test_greets_with_the_size_and_type_of_the_body(self):
        self.assertEqual(greet(b"abc", "image/png", [("greeting", "hi")]), b"hi: 3 bytes of image/png\n")
        self.assertEqual(greet(b"", "", []), b"hello: 0 bytes of unknown type\n")

    def test_refuses_an_unknown_parameter(self):
        with self.assertRaisesRegex(ValueError, r"^unknown parameter `colour`; this function takes `greeting`$"):
            greet(b"", "", [("colour", "red")])


if __name__ == "__main__":
    unittest.main()
