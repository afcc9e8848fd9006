using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Playwright;

namespace Cfn.Tests.Infrastructure;

/// <summary>
/// A real browser for the page tests: Microsoft.Playwright driving Debian's <c>chromium</c> (<c>/usr/bin/chromium</c>,
/// installed by scripts/test.sh; Playwright's own browser download cannot work here, so none is asked for: with an
/// <c>ExecutablePath</c> Playwright uses that binary and looks for no browser of its own). One Playwright driver and one
/// headless Chromium per test class (a class fixture); each test opens its pages with <see cref="OpenAsync"/>, which
/// records every console error and warning and every uncaught page error, and saves screenshots to the test artifacts
/// folder (<c>CFN_TEST_ARTIFACTS</c>, which scripts/test.sh sets, else a folder under the temp directory).
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    /// <summary>Debian's Chromium (package <c>chromium</c>).</summary>
    public const string ChromiumPath = "/usr/bin/chromium";

    /// <summary>Set to <c>1</c> to let a test copy its screenshot of a working dashboard to docs/images/dashboard.png.</summary>
    public const string UpdateScreenshotVariable = "CFN_UPDATE_SCREENSHOT";

    private IPlaywright? _playwright;
    private IBrowser? _browser;

    /// <summary>Where screenshots and console logs go: <c>$CFN_TEST_ARTIFACTS/browser</c>, else <c>$TMPDIR/cfn-test-artifacts/browser</c>.</summary>
    public static string ArtifactsDirectory { get; } = Path.Combine(
        Environment.GetEnvironmentVariable("CFN_TEST_ARTIFACTS") is { Length: > 0 } artifacts ? artifacts : Path.Combine(Path.GetTempPath(), "cfn-test-artifacts"),
        "browser");

    public IBrowser Browser => _browser ?? throw new InvalidOperationException("the browser is not started");

    public async Task InitializeAsync()
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new InvalidOperationException($"{ChromiumPath} is missing: install Debian's chromium (apt-get install -y chromium; scripts/test.sh does)");
        }

        Directory.CreateDirectory(ArtifactsDirectory);
        // Auto-waiting assertions (Expect) wait 10 s unless told otherwise, not Playwright's 5 s: a busy 2-core machine.
        Assertions.SetDefaultExpectTimeout(10_000);
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Timeout = 60_000, // a busy 2-core machine
            // Chromium refuses to start as root without --no-sandbox (the CI container runs the tests as root).
            // /dev/shm can be small in a container; Chromium then crashes on large pages without --disable-dev-shm-usage.
            Args = IsRoot() ? ["--no-sandbox", "--disable-dev-shm-usage"] : ["--disable-dev-shm-usage"],
        });
    }

    /// <summary>A new isolated page (its own context: no cookies or sessionStorage shared) at <paramref name="width"/>×<paramref name="height"/>.</summary>
    /// <param name="name">Names its artifacts (screenshots, the console log): the test's name.</param>
    public async Task<BrowserPage> OpenAsync(string name, int width = 1280, int height = 800)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = width, Height = height } });
        context.SetDefaultTimeout(30_000);
        var page = await context.NewPageAsync();
        return new BrowserPage(name, context, page);
    }

    /// <summary>Whether this process runs as root (effective UID 0, from /proc/self/status).</summary>
    private static bool IsRoot()
    {
        var uid = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        return uid is not null && uid.Split('\t', StringSplitOptions.RemoveEmptyEntries) is [_, _, var effective, ..] && effective == "0";
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.CloseAsync();
            await _browser.DisposeAsync();
        }

        _playwright?.Dispose();
    }
}

/// <summary>
/// One page of a <see cref="BrowserFixture"/> with what it reported: console errors and warnings (<see cref="Problems"/>),
/// uncaught exceptions, and every console line (saved next to its screenshots when the page is disposed).
/// </summary>
public sealed class BrowserPage : IAsyncDisposable
{
    private readonly IBrowserContext _context;
    private readonly ConcurrentQueue<string> _problems = new();
    private readonly ConcurrentQueue<string> _log = new();
    private int _shots;

    internal BrowserPage(string name, IBrowserContext context, IPage page)
    {
        Name = name;
        _context = context;
        Page = page;
        page.Console += (_, message) =>
        {
            var line = $"{message.Type}: {message.Text}" + (message.Location is { Length: > 0 } at ? $" ({at})" : "");
            _log.Enqueue(line);
            if (message.Type is "error" or "warning")
            {
                _problems.Enqueue(line);
            }
        };
        page.PageError += (_, error) =>
        {
            _log.Enqueue("pageerror: " + error);
            _problems.Enqueue("pageerror: " + error);
        };
        page.RequestFailed += (_, request) => _log.Enqueue($"requestfailed: {request.Method} {request.Url} {request.Failure}");
    }

    public string Name { get; }

    public IPage Page { get; }

    /// <summary>Console errors and warnings and uncaught page errors so far, as <c>type: text (location)</c>.</summary>
    public IReadOnlyList<string> Problems => [.. _problems];

    /// <summary>Every console line and page error so far.</summary>
    public IReadOnlyList<string> ConsoleLog => [.. _log];

    /// <summary>
    /// Fails when the page logged a console error or warning or threw, apart from lines <paramref name="expected"/>
    /// accepts (e.g. Chromium's own line for a 401 answer that the test asked for).
    /// </summary>
    public void AssertNoConsoleProblems(Func<string, bool>? expected = null)
    {
        var unexpected = _problems.Where(p => expected is null || !expected(p)).ToList();
        Assert.True(unexpected.Count == 0, $"the page {Name} logged {unexpected.Count} console error(s)/warning(s) or page error(s):\n" + string.Join('\n', unexpected));
    }

    /// <summary>
    /// Chromium's own console error for a request answered with <paramref name="status"/> (it logs one for every 4xx/5xx
    /// answer, fetch included): pass it to <see cref="AssertNoConsoleProblems"/> where the test asked for that answer.
    /// </summary>
    public static Func<string, bool> RefusedRequest(int status) => line =>
        line.StartsWith($"error: Failed to load resource: the server responded with a status of {status.ToString(CultureInfo.InvariantCulture)} ", StringComparison.Ordinal);

    /// <summary>Saves a screenshot of the viewport as <c>{name}-{label}.png</c> in the artifacts folder; returns its path.</summary>
    public async Task<string> ScreenshotAsync(string label, bool fullPage = false)
    {
        var path = Path.Combine(BrowserFixture.ArtifactsDirectory,
            $"{Name}-{Interlocked.Increment(ref _shots).ToString("00", CultureInfo.InvariantCulture)}-{label}.png");
        await Page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = fullPage });
        return path;
    }

    /// <summary>
    /// Copies <paramref name="screenshot"/> (a 1280×800 one of a working dashboard) to docs/images/dashboard.png, which the
    /// README shows, only when <c>CFN_UPDATE_SCREENSHOT=1</c>: normal runs never touch the docs.
    /// </summary>
    public static bool PublishScreenshot(string screenshot)
    {
        if (Environment.GetEnvironmentVariable(BrowserFixture.UpdateScreenshotVariable) != "1")
        {
            return false;
        }

        var target = Repository.PathOf("docs/images/dashboard.png");
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        File.Copy(screenshot, target, overwrite: true);
        return true;
    }

    /// <summary>Width and height of a PNG file, from its IHDR chunk.</summary>
    public static (int Width, int Height) PngSize(string path)
    {
        var header = new byte[24];
        using (var file = File.OpenRead(path))
        {
            file.ReadExactly(header);
        }

        Assert.True(header.AsSpan(0, 8).SequenceEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }), $"{path} is not a PNG");
        return (System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(16)), System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(20)));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            // The last state, whatever the test's outcome: what a failing test's page showed.
            await ScreenshotAsync("last");
        }
        catch (PlaywrightException)
        {
            // the page or browser is already gone
        }

        await File.WriteAllLinesAsync(Path.Combine(BrowserFixture.ArtifactsDirectory, $"{Name}-console.log"), _log);
        await _context.CloseAsync();
        await _context.DisposeAsync();
    }
}
