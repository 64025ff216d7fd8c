-- The demo database the default mcp_servers.json gives the bot: a small bookshop.
-- demo.db is built from this file (see tests/servers/test_demo_database.py); it is opened read-only.
CREATE TABLE authors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    born INTEGER,
    country TEXT
);
CREATE TABLE books (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    author_id INTEGER NOT NULL REFERENCES authors (id),
    published INTEGER,
    price NUMERIC(6, 2) NOT NULL
);
CREATE TABLE sales (
    id INTEGER PRIMARY KEY,
    book_id INTEGER NOT NULL REFERENCES books (id),
    sold_on DATE NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0)
);
INSERT INTO authors (id, name, born, country) VALUES
    (1, 'Ursula K. Le Guin', 1929, 'United States'),
    (2, 'Stanisław Lem', 1921, 'Poland'),
    (3, 'Octavia E. Butler', 1947, 'United States'),
    (4, 'Italo Calvino', 1923, 'Italy'),
    (5, 'Liu Cixin', 1963, 'China');
INSERT INTO books (id, title, author_id, published, price) VALUES
    (1, 'The Left Hand of Darkness', 1, 1969, 12.99),
    (2, 'The Dispossessed', 1, 1974, 13.50),
    (3, 'Solaris', 2, 1961, 11.00),
    (4, 'The Cyberiad', 2, 1965, 10.25),
    (5, 'Kindred', 3, 1979, 14.00),
    (6, 'Parable of the Sower', 3, 1993, 15.75),
    (7, 'Invisible Cities', 4, 1972, 9.99),
    (8, 'If on a winter''s night a traveler', 4, 1979, 12.00),
    (9, 'The Three-Body Problem', 5, 2008, 16.40);
INSERT INTO sales (id, book_id, sold_on, quantity) VALUES
    (1, 1, '2026-09-01', 2), (2, 3, '2026-09-01', 1), (3, 9, '2026-09-02', 4), (4, 5, '2026-09-03', 1),
    (5, 7, '2026-09-03', 3), (6, 2, '2026-09-05', 1), (7, 9, '2026-09-06', 2), (8, 6, '2026-09-08', 5),
    (9, 4, '2026-09-10', 1), (10, 8, '2026-09-12', 2), (11, 1, '2026-09-15', 1), (12, 9, '2026-09-20', 3),
    (13, 3, '2026-10-01', 2), (14, 5, '2026-10-04', 2), (15, 6, '2026-10-09', 1), (16, 9, '2026-10-11', 6);
