<?php
// Drives php-memcached for tests/interop_live.rs.
//
//   php php_peer.php CONFIG ACTION SERVERS KEYFILE [TAG]
//
// CONFIG  ketama          OPT_DISTRIBUTION = DISTRIBUTION_CONSISTENT, then
//                         OPT_LIBKETAMA_COMPATIBLE = true (the order AWS documents)
//         consistent      OPT_DISTRIBUTION = DISTRIBUTION_CONSISTENT
//         consistent-md5  DISTRIBUTION_CONSISTENT and OPT_HASH = HASH_MD5
//         modula          no distribution option (php-memcached's default)
// ACTION  set     stores every key with the value "TAG:KEY", then prints "stored N" and "failed N"
//         get     reads every key, prints "hits N", "missing N", "wrong N", and up to 5
//                 "example KEY" lines for keys that were missing or wrong
//         locate  prints "KEY<TAB>HOST:PORT" per key: getServerByKey, computed locally
// SERVERS comma-separated HOST:PORT[:WEIGHT], added in that order after the options.
// KEYFILE one key per line (UTF-8, no whitespace).
//
// The binary protocol is on: on the ASCII protocol php-memcached refuses non-ASCII keys.

if ($argc < 5) {
    fwrite(STDERR, "usage: php_peer.php CONFIG ACTION SERVERS KEYFILE [TAG]\n");
    exit(2);
}
if (!class_exists('Memcached')) {
    fwrite(STDERR, "the memcached extension is not loaded\n");
    exit(3);
}
[$_, $config, $action, $servers, $keyfile] = $argv;
$tag = $argv[5] ?? 'php';

$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->setOption(Memcached::OPT_CONNECT_TIMEOUT, 2000);
$m->setOption(Memcached::OPT_SEND_TIMEOUT, 2000000);
$m->setOption(Memcached::OPT_RECV_TIMEOUT, 2000000);
switch ($config) {
    case 'ketama':
        $m->setOption(Memcached::OPT_DISTRIBUTION, Memcached::DISTRIBUTION_CONSISTENT);
        $m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
        break;
    case 'consistent':
        $m->setOption(Memcached::OPT_DISTRIBUTION, Memcached::DISTRIBUTION_CONSISTENT);
        break;
    case 'consistent-md5':
        $m->setOption(Memcached::OPT_DISTRIBUTION, Memcached::DISTRIBUTION_CONSISTENT);
        $m->setOption(Memcached::OPT_HASH, Memcached::HASH_MD5);
        break;
    case 'modula':
        break;
    default:
        fwrite(STDERR, "unknown config $config\n");
        exit(2);
}
foreach (explode(',', $servers) as $spec) {
    $parts = explode(':', $spec);
    $weight = count($parts) > 2 ? (int) $parts[2] : 0;
    if (!$m->addServer($parts[0], (int) $parts[1], $weight)) {
        fwrite(STDERR, "addServer($spec) failed: " . $m->getResultMessage() . "\n");
        exit(4);
    }
}

$keys = array_values(array_filter(explode("\n", file_get_contents($keyfile)), 'strlen'));

switch ($action) {
    case 'set':
        $stored = 0;
        $failed = 0;
        foreach ($keys as $key) {
            if ($m->set($key, "$tag:$key", 600)) {
                $stored++;
            } else {
                $failed++;
                if ($failed <= 5) {
                    echo "example $key ", $m->getResultMessage(), "\n";
                }
            }
        }
        echo "stored $stored\nfailed $failed\n";
        break;
    case 'get':
        $hits = 0;
        $missing = 0;
        $wrong = 0;
        foreach ($keys as $key) {
            $value = $m->get($key);
            if ($value === false) {
                $missing++;
                $bad = true;
            } elseif ($value !== "$tag:$key") {
                $wrong++;
                $bad = true;
            } else {
                $hits++;
                $bad = false;
            }
            if ($bad && $missing + $wrong <= 5) {
                echo "example $key\n";
            }
        }
        echo "hits $hits\nmissing $missing\nwrong $wrong\n";
        break;
    case 'locate':
        foreach ($keys as $key) {
            $server = $m->getServerByKey($key);
            echo $key, "\t", $server['host'], ':', $server['port'], "\n";
        }
        break;
    default:
        fwrite(STDERR, "unknown action $action\n");
        exit(2);
}
