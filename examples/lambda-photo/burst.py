"""run-local's burst: COUNT invocations of the function sent at once, and what they answered.

    python burst.py PORT COUNT ANSWERS

Sends COUNT invocations to the Lambda emulator on 127.0.0.1:PORT (its Invoke API, as
`cargo lambda invoke` does), one per thread, all released together by a barrier. Writes every
answer, one JSON object a line, to the file ANSWERS, and prints one JSON object that sums them up:

    answers       invocations that answered a JSON object (the others are in `errors`)
    errors        what the others said
    works         answers whose message is "It works!"
    photo_counts  the distinct photo counts answered
    digests       the distinct digests of the photos' JSON answered
    environments  how many execution environments (function processes) answered
    loaded        how many answers ran the scan (`"loaded": true`)
    loader        the answer that ran it, when exactly one did
    waited        answers from other environments that started before that scan's value was
                  stored, and so were served the value they waited for
    wait_ms_max   the longest get_or_load among those
    hit_ms_max    the longest get_or_load among the others (served from the cache)
    spread_ms     from the first handler start to the last
    wall_ms       from the release to the last answer
"""

import json
import sys
import threading
import time
import urllib.request


def main():
    port, count, answers_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/lambda-photo/invocations"
    barrier = threading.Barrier(count + 1)
    results = [None] * count

    def invoke(i):
        barrier.wait()
        request = urllib.request.Request(url, data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                body = response.read()
        except Exception as e:  # reported in the summary, not raised
            results[i] = f"invocation failed: {e!r}"
            return
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        results[i] = answer if isinstance(answer, dict) else f"not a JSON object: {body[:300]!r}"

    threads = [threading.Thread(target=invoke, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    released = time.monotonic()
    for thread in threads:
        thread.join()
    wall_ms = round((time.monotonic() - released) * 1000)

    answers = [r for r in results if isinstance(r, dict)]
    errors = [r for r in results if not isinstance(r, dict)]
    with open(answers_path, "w") as file:
        for answer in answers:
            file.write(json.dumps(answer, sort_keys=True) + "\n")

    loaders = [a for a in answers if a.get("loaded") is True]
    loader = loaders[0] if len(loaders) == 1 else None
    others = [a for a in answers if a.get("loaded") is not True]
    waited = []
    if loader is not None:
        stored_at = loader["started_at_ms"] + loader["get_or_load_ms"]
        waited = [
            a
            for a in others
            if a["environment"] != loader["environment"] and a["started_at_ms"] < stored_at
        ]
    hits = [a for a in others if a not in waited]
    starts = [a["started_at_ms"] for a in answers if "started_at_ms" in a]
    print(
        json.dumps(
            {
                "answers": len(answers),
                "errors": errors,
                "works": sum(1 for a in answers if a.get("message") == "It works!"),
                "photo_counts": sorted({a.get("photos") for a in answers}, key=str),
                "digests": sorted({a.get("digest") for a in answers}, key=str),
                "environments": len({a.get("environment") for a in answers}),
                "loaded": len(loaders),
                "loader": loader,
                "waited": len(waited),
                "wait_ms_max": max((a["get_or_load_ms"] for a in waited), default=None),
                "hit_ms_max": max((a.get("get_or_load_ms", 0) for a in hits), default=None),
                "spread_ms": max(starts) - min(starts) if starts else None,
                "wall_ms": wall_ms,
            }
        )
    )


if __name__ == "__main__":
    main()
