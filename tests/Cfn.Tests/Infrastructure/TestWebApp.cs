using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Cfn.Tests.Infrastructure;

/// <summary>
/// A real Kestrel server for API tests: endpoints are mapped by the test, served over real HTTP on 127.0.0.1 and,
/// for the D12 401 path, on a non-loopback address of this machine (a request from there is not loopback).
/// </summary>
public sealed class TestWebApp : IAsyncDisposable
{
    private TestWebApp(WebApplication app, Uri loopback, Uri? external)
    {
        App = app;
        Loopback = new HttpClient { BaseAddress = loopback, Timeout = TimeSpan.FromSeconds(15) };
        External = external is null ? null : new HttpClient { BaseAddress = external, Timeout = TimeSpan.FromSeconds(15) };
    }

    public WebApplication App { get; }

    /// <summary>A client whose requests come from loopback (admin endpoints allowed without a token).</summary>
    public HttpClient Loopback { get; }

    /// <summary>A client whose requests come from a non-loopback address (admin endpoints need the bearer token).</summary>
    public HttpClient? External { get; }

    /// <summary>Builds the app, lets <paramref name="map"/> add endpoints, and starts it on free ports.</summary>
    public static Task<TestWebApp> StartAsync(Action<WebApplication> map, bool listenExternally = false) => StartAsync(map, _ => { }, listenExternally);

    /// <summary>As <see cref="StartAsync(Action{WebApplication}, bool)"/>, with <paramref name="services"/> registered first.</summary>
    public static async Task<TestWebApp> StartAsync(Action<WebApplication> map, Action<IServiceCollection> services, bool listenExternally = false)
    {
        ArgumentNullException.ThrowIfNull(map);
        ArgumentNullException.ThrowIfNull(services);
        var builder = WebApplication.CreateSlimBuilder();
        services(builder.Services);
        builder.Logging.ClearProviders();
        var port = FreePort(IPAddress.Loopback);
        var urls = new List<string> { $"http://127.0.0.1:{port}" };
        IPAddress? external = null;
        if (listenExternally)
        {
            external = NonLoopbackAddress();
            urls.Add($"http://{external}:{FreePort(external)}");
        }

        builder.WebHost.UseUrls([.. urls]);
        var app = builder.Build();
        map(app);
        await app.StartAsync();
        return new TestWebApp(app, new Uri(urls[0]), external is null ? null : new Uri(urls[1]));
    }

    /// <summary>An IPv4 address of this machine that is not loopback; the 401 tests need one.</summary>
    public static IPAddress NonLoopbackAddress() =>
        NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses)
            .Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
        ?? throw new InvalidOperationException("this machine has no non-loopback IPv4 address; the D12 401 tests need one");

    /// <summary>Runs the real <c>jq</c> with <paramref name="filter"/> on <paramref name="json"/> (the runbook's filters); returns stdout.</summary>
    public static async Task<string> JqAsync(string filter, string json)
    {
        var start = new ProcessStartInfo("jq", ["-c", filter])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var jq = Process.Start(start) ?? throw new InvalidOperationException("jq did not start");
        await jq.StandardInput.WriteAsync(json);
        jq.StandardInput.Close();
        var output = await jq.StandardOutput.ReadToEndAsync();
        var error = await jq.StandardError.ReadToEndAsync();
        await jq.WaitForExitAsync();
        return jq.ExitCode == 0 ? output : throw new InvalidOperationException($"jq '{filter}' failed ({jq.ExitCode}): {error}");
    }

    private static int FreePort(IPAddress address)
    {
        using var listener = new TcpListener(address, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        Loopback.Dispose();
        External?.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
