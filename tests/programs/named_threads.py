"""Three threads named by the program, worker-0..2; worker-i calls square 100 * (i + 1) times."""

import threading


def square(x: int) -> int:
    return x * x


def work(times: int) -> None:
    for i in range(times):
        square(i)


def main() -> None:
    threads = [threading.Thread(target=work, args=(100 * (i + 1),), name=f"worker-{i}") for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
