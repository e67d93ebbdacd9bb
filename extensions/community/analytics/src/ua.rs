//! A small, hand-written user-agent classifier: browser, operating system and device class,
//! and the bot filter. Substring rules in a fixed order (the order matters: Edge and Opera
//! also say "Chrome", Chrome also says "Safari", Android also says "Linux"); anything not
//! recognised is `Other`. Good enough for a dashboard's top lists, not for fingerprinting.

/// What a user agent says about the visitor's software and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    /// `Chrome`, `Firefox`, `Safari`, `Edge`, `Opera`, `Samsung Internet` or `Other`.
    pub browser: &'static str,
    /// `Windows`, `macOS`, `iOS`, `Android`, `ChromeOS`, `Linux` or `Other`.
    pub os: &'static str,
    /// `desktop`, `mobile` or `tablet`.
    pub device: &'static str,
}

/// Classifies a user agent (already lower-cased, see [`lower`]).
pub fn classify(ua: &str) -> Agent {
    Agent {
        browser: browser(ua),
        os: os(ua),
        device: device(ua),
    }
}

/// The user agent lower-cased, cut at 512 bytes (rules look at the start).
pub fn lower(ua: &[u8]) -> String {
    let cut = &ua[..ua.len().min(512)];
    String::from_utf8_lossy(cut).to_ascii_lowercase()
}

fn browser(ua: &str) -> &'static str {
    const RULES: [(&str, &str); 9] = [
        ("edg/", "Edge"),
        ("edga/", "Edge"),
        ("edgios/", "Edge"),
        ("opr/", "Opera"),
        ("samsungbrowser/", "Samsung Internet"),
        ("firefox/", "Firefox"),
        ("fxios/", "Firefox"),
        ("chrome/", "Chrome"),
        ("crios/", "Chrome"),
    ];
    for (needle, name) in RULES {
        if ua.contains(needle) {
            return name;
        }
    }
    if ua.contains("safari/") && ua.contains("version/") {
        return "Safari";
    }
    "Other"
}

fn os(ua: &str) -> &'static str {
    if ua.contains("windows") {
        "Windows"
    } else if ua.contains("android") {
        "Android"
    } else if ua.contains("iphone") || ua.contains("ipad") || ua.contains("ipod") {
        "iOS"
    } else if ua.contains("cros") {
        "ChromeOS"
    } else if ua.contains("macintosh") || ua.contains("mac os x") {
        "macOS"
    } else if ua.contains("linux") || ua.contains("x11") {
        "Linux"
    } else {
        "Other"
    }
}

fn device(ua: &str) -> &'static str {
    if ua.contains("ipad")
        || ua.contains("tablet")
        || (ua.contains("android") && !ua.contains("mobile"))
    {
        "tablet"
    } else if ua.contains("mobi") || ua.contains("iphone") || ua.contains("ipod") {
        "mobile"
    } else {
        "desktop"
    }
}

/// Substrings (lower-case) of the user agents of crawlers, monitors, link previewers,
/// headless browsers and HTTP libraries.
const BOT_PATTERNS: [&str; 31] = [
    "bot",
    "crawl",
    "spider",
    "slurp",
    "archiver",
    "facebookexternalhit",
    "embedly",
    "preview",
    "headlesschrome",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "lighthouse",
    "pingdom",
    "uptime",
    "monitor",
    "statuscake",
    "curl/",
    "wget/",
    "httpie/",
    "python-",
    "aiohttp",
    "java/",
    "okhttp",
    "go-http-client",
    "node-fetch",
    "axios/",
    "libwww-perl",
    "scrapy",
    "feedfetcher",
];

/// Whether a (lower-cased) user agent is a bot's. An empty or very short one counts as a
/// bot: browsers always send a long one.
pub fn is_bot(ua: &str) -> bool {
    ua.len() < 10 || BOT_PATTERNS.iter().any(|p| ua.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(ua: &str) -> Agent {
        classify(&lower(ua.as_bytes()))
    }

    #[test]
    fn real_browsers() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                ("Chrome", "Windows", "desktop"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
                ("Edge", "Windows", "desktop"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
                ("Safari", "macOS", "desktop"),
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                ("Firefox", "Linux", "desktop"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
                ("Safari", "iOS", "mobile"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
                ("Chrome", "iOS", "mobile"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
                ("Samsung Internet", "Android", "mobile"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                ("Chrome", "Android", "mobile"),
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
                ("Safari", "iOS", "tablet"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                ("Chrome", "Android", "tablet"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
                ("Opera", "Windows", "desktop"),
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                ("Chrome", "ChromeOS", "desktop"),
            ),
            (
                "Lynx/2.9.0dev.10 libwww-FM/2.14 SSL-MM/1.4.1",
                ("Other", "Other", "desktop"),
            ),
        ];
        for (ua, (browser, os, device)) in cases {
            assert_eq!(
                agent(ua),
                Agent {
                    browser,
                    os,
                    device
                },
                "{ua}"
            );
        }
    }

    #[test]
    fn bots_and_tools_are_recognised() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "",
        ] {
            assert!(is_bot(&lower(ua.as_bytes())), "{ua}");
        }
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
        assert!(!is_bot(&lower(firefox.as_bytes())));
    }
}
